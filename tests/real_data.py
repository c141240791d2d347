"""Where the real-data tests find the GroupLens archives (DESIGN.md section 6).

The archives are never committed. Tests find ml-latest-small through the
environment variable ESAPN_ML_LATEST_SMALL, by default
`<repo>/../shared/data/ml-latest-small.zip`. When the file is missing a test
is skipped, except under CI (env CI set), where it fails: CI must run them.
A run that skipped them ends with one line saying so (`missing_data_line`,
printed by tests/conftest.py), so that a green run without the data does not
pass for one that read it.
"""

import os
from typing import Iterable, Optional
import unittest

ML_LATEST_SMALL_ENV = 'ESAPN_ML_LATEST_SMALL'
# Ends the path in a skip reason; `missing_data_line` counts the reasons.
_SKIP_MARK = f' not found; set {ML_LATEST_SMALL_ENV}'
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
    message = (f'{path}{_SKIP_MARK} to the GroupLens ml-latest-small.zip')
    if os.environ.get('CI'):
      testcase.fail(f'CI is set but {message}')
    testcase.skipTest(message)
  return path


def missing_data_line(skip_reasons: Iterable[str]) -> Optional[str]:
  """The line `make test` ends with when real-data tests were skipped.

  Args:
    skip_reasons: the reasons of every skipped test, as pytest reports them.

  Returns:
    One line naming how many real-data tests were skipped, the path looked
    at and the variable to set; None when none was skipped for missing data.
  """
  missing = [r for r in skip_reasons if _SKIP_MARK in r]
  if not missing:
    return None
  path = missing[0].split(_SKIP_MARK)[0].removeprefix('Skipped: ')
  return (f'{len(missing)} real-data test(s) skipped: {path} not found; set '
          f'{ML_LATEST_SMALL_ENV}=/path/to/ml-latest-small.zip (the GroupLens '
          'download) to run them')
