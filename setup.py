"""Installs esapn_tf. The pins live in requirements.txt (BUILD_NOTES.md)."""

import os

import setuptools

_HERE = os.path.dirname(os.path.abspath(__file__))
_TF_VERSION = '2.21.0'


def _requirements():
  with open(os.path.join(_HERE, 'requirements.txt'), encoding='utf-8') as f:
    lines = [line.split('#')[0].strip() for line in f]
  return [line for line in lines if line and not line.startswith('pytest')]


setuptools.setup(
    name='esapn_tf',
    version='0.1.0',
    description=('Automated embedding size search (ESAPN, SIGIR 2020) for '
                 'deep recommenders, in TensorFlow and TF-Agents.'),
    packages=setuptools.find_packages(include=['esapn_tf', 'esapn_tf.*']),
    python_requires='>=3.11,<3.12',
    install_requires=_requirements(),
    extras_require={
        'gpu': [f'tensorflow[and-cuda]=={_TF_VERSION}'],
        'test': ['pytest==9.2.0'],
    },
)
