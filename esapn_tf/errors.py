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


# What `escape` keeps as is: printable characters other than the backslash.
_ESCAPES = {'\t': '\\t', '\n': '\\n', '\r': '\\r', '\\': '\\\\'}


def escape(text: str | bytes, width: int = 80) -> str:
  """`text` as one line of printable characters, cut to `width`.

  For quoting input in messages: a line of a binary or wrongly encoded file
  must not print control characters (or a whole megabyte) to the terminal.
  Bytes are decoded as UTF-8; each byte that is not valid UTF-8 is shown as
  `\\xNN` (as are the lone surrogates of a str decoded with
  'surrogateescape', which stand for such bytes). Tab, line feed and carriage
  return are shown as `\\t`, `\\n`, `\\r`; other non-printable characters as
  `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`; a backslash as `\\\\`, so the escapes
  are unambiguous (as in Python's `repr`).

  Args:
    text: str, or bytes of any encoding.
    width: the most characters of the result; a longer result is cut
      (never inside an escape) and ends with '...'.

  Returns:
    A str of at most `width` printable characters.
  """
  if isinstance(text, (bytes, bytearray)):
    text = bytes(text).decode('utf-8', 'surrogateescape')
  pieces, length = [], 0
  for char in text:
    code = ord(char)
    if char in _ESCAPES:
      piece = _ESCAPES[char]
    elif 0xDC80 <= code <= 0xDCFF:  # A byte that was not UTF-8.
      piece = f'\\x{code - 0xDC00:02x}'
    elif char.isprintable():
      piece = char
    elif code < 0x100:
      piece = f'\\x{code:02x}'
    elif code < 0x10000:
      piece = f'\\u{code:04x}'
    else:
      piece = f'\\U{code:08x}'
    if length + len(piece) > width:
      while pieces and length + 3 > width:
        length -= len(pieces.pop())
      return ''.join(pieces) + '...'
    pieces.append(piece)
    length += len(piece)
  return ''.join(pieces)


def quote(text: str | bytes, width: int = 80) -> str:
  """`escape(text, width)` between single quotes, for a value in a message.

  Args:
    text: str, or bytes of any encoding.
    width: the most characters between the quotes.

  Returns:
    `'...'`: at most `width` + 2 printable characters.
  """
  return f"'{escape(text, width)}'"
