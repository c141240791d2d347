"""Safe quoting of input in messages, and files that are not UTF-8 text.

A message that quotes a line of input must stay one readable line: bytes that
are not printable shown as `\\xNN`, cut to 80 characters, the line named.
UTF-16, UTF-32 and binary files are refused with one line naming the
encoding problem; Latin-1 bytes keep working where they did (issue 14).
"""

import os
import re
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from esapn_tf import errors
from esapn_tf.data import movielens

_HEADER = 'userId,movieId,rating,timestamp'
_SEPARATORS = {'ratings.csv': ',', 'ratings.dat': '::', 'u.data': '\t'}
_TEXT = f'{_HEADER}\n1,31,2.5,1260759144\n7,31,5.0,851866703\n'


class EscapeTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('plain', 'userId,movieId', 'userId,movieId'),
      ('nul_and_bell', 'a\x00b\x07', 'a\\x00b\\x07'),
      ('tab_newline_cr', '1\t2\n3\r', '1\\t2\\n3\\r'),
      ('escape_sequence', '\x1b[31mred', '\\x1b[31mred'),
      ('backslash', 'C:\\x', 'C:\\\\x'),
      ('printable_unicode', 'café ☕', 'café ☕'),
      ('line_separator', 'a\u2028b', 'a\\u2028b'),
      # Bytes: invalid UTF-8 shown byte by byte, valid UTF-8 decoded.
      ('latin1_bytes', b'caf\xe9', 'caf\\xe9'),
      ('utf8_bytes', 'café'.encode(), 'café'),
      ('binary_bytes', b'\xff\xfe\x00\x01', '\\xff\\xfe\\x00\\x01'),
      # A str decoded with 'surrogateescape' shows the original bytes.
      ('surrogateescape', b'3\xe9'.decode('utf-8', 'surrogateescape'),
       '3\\xe9'),
  )
  def test_known_answers(self, text, expected):
    self.assertEqual(errors.escape(text), expected)

  @parameterized.named_parameters(
      # 7 characters and '...' fill the width of 10.
      ('long_text', 'x' * 100, 10, 'x' * 7 + '...'),
      ('exactly_the_width', 'x' * 10, 10, 'x' * 10),
      # Never cut inside an escape: '\x00' (4) + '...' (3) <= 10 < 4 + 4 + 3.
      ('escapes', b'\x00' * 10, 10, '\\x00...'),
  )
  def test_cut_to_width(self, text, width, expected):
    self.assertEqual(errors.escape(text, width), expected)

  def test_random_bytes_give_printable_bounded_text(self):
    data = np.random.default_rng(0).integers(0, 256, 10_000,
                                             np.uint8).tobytes()
    shown = errors.escape(data)
    self.assertLessEqual(len(shown), 80)
    self.assertTrue(shown.isprintable(), shown)
    self.assertTrue(shown.endswith('...'))

  def test_quote(self):
    self.assertEqual(errors.quote(b'1,\x002'), "'1,\\x002'")
    self.assertEqual(errors.quote('y' * 90), "'" + 'y' * 77 + "...'")


class EncodingTest(tf.test.TestCase, parameterized.TestCase):

  def _write(self, filename: str, content: bytes) -> str:
    folder = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()),
                          'ml-test')
    os.makedirs(folder)
    path = os.path.join(folder, filename)
    with open(path, 'wb') as f:
      f.write(content)
    return path

  def assertOneReadableLine(self, path: str, pattern: str) -> str:
    with self.assertRaises(errors.DataError) as raised:
      movielens.load_grouplens(path)
    message = str(raised.exception)
    self.assertTrue(message.isprintable(), repr(message))  # No \n, no NUL.
    self.assertLess(len(message), len(path) + 300)
    self.assertStartsWith(message, path)
    self.assertRegex(message, pattern)
    return message

  @parameterized.named_parameters(
      ('utf16_bom', _TEXT.encode('utf-16'),
       'UTF-16: it starts with a UTF-16 byte-order mark',
       'iconv -f UTF-16 -t UTF-8'),
      ('utf16_be_bom', b'\xfe\xff' + _TEXT.encode('utf-16-be'),
       'UTF-16: it starts with a UTF-16 byte-order mark',
       'iconv -f UTF-16 -t UTF-8'),
      ('utf16le_no_bom', _TEXT.encode('utf-16-le'),
       'UTF-16LE: every other byte is NUL', 'iconv -f UTF-16LE -t UTF-8'),
      ('utf16be_no_bom', _TEXT.encode('utf-16-be'),
       'UTF-16BE: every other byte is NUL', 'iconv -f UTF-16BE -t UTF-8'),
      ('utf32_bom', _TEXT.encode('utf-32'),
       'UTF-32: it starts with a UTF-32 byte-order mark',
       'iconv -f UTF-32 -t UTF-8'),
  )
  def test_utf16_and_utf32_are_named(self, content, looks, fix):
    path = self._write('ratings.csv', content)
    message = self.assertOneReadableLine(
        path, f'^{re.escape(path)} is not UTF-8 text \\(looks like ')
    self.assertIn(looks, message)
    self.assertIn(fix, message)

  @parameterized.named_parameters(*[(f.replace('.', '_'), f)
                                    for f in _SEPARATORS])
  def test_random_bytes_give_one_readable_line(self, filename):
    data = np.random.default_rng(1).integers(0, 256, 50_000,
                                             np.uint8).tobytes()
    path = self._write(filename, data)
    self.assertOneReadableLine(
        path, r'is not UTF-8 text \(binary data: a NUL byte at byte '
        r'[0-9,]+, line [0-9]+\); expected a ratings text file')

  @parameterized.named_parameters(*[(f.replace('.', '_'), f)
                                    for f in _SEPARATORS])
  def test_random_bytes_without_nul_quote_the_line_escaped(self, filename):
    # No NUL: the file reaches the parser, whose message quotes line 1.
    data = np.random.default_rng(2).integers(1, 256, 5_000,
                                             np.uint8).tobytes()
    path = self._write(filename, data)
    message = self.assertOneReadableLine(path,
                                         f'^{re.escape(path)} line 1\\b')
    self.assertRegex(message, r'\\x[0-9a-f]{2}')

  def test_long_line_is_cut(self):
    path = self._write('u.data', b'1\t2\t3\t4\n1\t' + b'9x' * 300 +
                       b'\t3\t4\n')
    self.assertOneReadableLine(
        # 80 characters: '1\\t' (3), 37 times '9x' (74), '...' (3).
        path, f"^{re.escape(path)} line 2 "
        f"\\('1\\\\t(9x){{37}}\\.\\.\\.'\\): column movieId holds a "
        # 40 characters of the value: 18 times '9x', '9', '...'.
        f"non-numeric value '(9x){{18}}9\\.\\.\\.'")

  def test_control_characters_are_escaped(self):
    path = self._write('u.data', b'1\t2\t3\t4\n1\t2\x1b[2J\x07\t3\t4\n')
    self.assertOneReadableLine(
        path, re.escape(f"{path} line 2 ('1\\t2\\x1b[2J\\x07\\t3\\t4'): "
                        "column movieId holds a non-numeric value "
                        "'2\\x1b[2J\\x07'"))

  def test_binary_header_is_escaped(self):
    path = self._write('ratings.csv', b'\x1b[2J\xff,\x07\nx\n')
    self.assertOneReadableLine(
        path, re.escape('in the header line, each once, found '
                        '\\x1b[2J\\xff,\\x07'))

  def test_latin1_in_an_unread_column_still_loads(self):
    path = self._write('ratings.csv', f'{_HEADER},tag\n1,31,2.5,9,caf\xe9\n'
                       '7,31,5.0,8,na\xefve\n'.encode('latin-1'))
    r = movielens.load_grouplens(path)
    self.assertAllEqual(r.user_id, [1, 7])
    self.assertAllEqual(r.rating, np.array([2.5, 5.0], np.float32))

  def test_latin1_column_name_is_escaped(self):
    # The header names are quoted in the field-count message.
    path = self._write('ratings.csv', f'{_HEADER},caf\xe9\n1,31,2.5,9,x\n'
                       '1,31\n'.encode('latin-1'))
    self.assertOneReadableLine(
        path, re.escape(f"{path} line 3 ('1,31'): found 2 field(s); expected "
                        '5 (userId,movieId,rating,timestamp,caf\\xe9)'))

  def test_latin1_in_a_value_is_shown_as_a_byte(self):
    path = self._write('ratings.csv', f'{_HEADER}\n1,31,2.5,9\n1,31,3\xe9,9\n'
                       .encode('latin-1'))
    self.assertOneReadableLine(
        path, re.escape(f"{path} line 3 ('1,31,3\\xe9,9'): column rating "
                        "holds a non-numeric value '3\\xe9'"))


if __name__ == '__main__':
  tf.test.main()
