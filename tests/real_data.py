"""Where the real-data tests find the GroupLens archives (DESIGN.md section 6).

The archives are never committed. Tests find ml-latest-small through the
environment variable ESAPN_ML_LATEST_SMALL, by default
`<repo>/../shared/data/ml-latest-small.zip`. When the file is missing a test
is skipped, except under CI (env CI set), where it fails: CI must run them.
"""

import os
import unittest

ML_LATEST_SMALL_ENV = 'ESAPN_ML_LATEST_SMALL'
_DEFAULT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..',
    'shared', 'data', 'ml-latest-small.zip')


def ml_latest_small_path(testcase: unittest.TestCase) -> str:
  """The path of ml-latest-small.zip, or skips (fails under CI) the test.

  Args:
    testcase: the running test, used to skip or fail it.

  Returns:
    An existing path.
  """
  path = os.path.normpath(os.environ.get(ML_LATEST_SMALL_ENV) or _DEFAULT)
  if not os.path.exists(path):
    message = (f'{path} not found; set {ML_LATEST_SMALL_ENV} to the GroupLens '
               'ml-latest-small.zip')
    if os.environ.get('CI'):
      testcase.fail(f'CI is set but {message}')
    testcase.skipTest(message)
  return path
