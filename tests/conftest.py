"""pytest set-up: TF-Agents needs Keras 2, chosen before TensorFlow loads."""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
