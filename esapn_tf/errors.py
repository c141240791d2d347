"""Error types shared by the package.

`bin/` scripts catch `UserInputError` and print its message as one line, then
exit with status 2 and no traceback: the message must name the problem and the
fix.
"""


class UserInputError(ValueError):
  """Bad input from the user: flags, config values or a data path."""


class DataError(UserInputError):
  """A ratings file, archive or folder that cannot be read as MovieLens."""


class TrainingError(RuntimeError):
  """The run cannot go on (e.g. a NaN loss); the message names the step."""


class RunInterrupted(RuntimeError):
  """SIGINT or SIGTERM: a checkpoint was written; rerunning resumes."""
