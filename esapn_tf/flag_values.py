"""What the command-line flags' values mean, without absl (bin/ holds flags).

`bin/train.py` (and the scripts that reuse its flags) define the flags with
absl; the rules that turn their text into configuration live here:
`bool_or_auto` (`--jit_compile`), `dataset_from_data_dir` (`--dataset`
left out) and `ignored_flag_notes` (flags of a method other than the one
run).
"""

import os
from typing import Iterable, Optional

from esapn_tf import config as config_lib
from esapn_tf import errors

# Flags that only some methods read: a note when another method is chosen.
METHOD_FLAGS = {'fixed_size': ('fixed', 'pruned'),
                'mde_temperature': ('mde',),
                'growth_probability': ('random',),
                'growth_threshold': ('threshold',),
                'architecture_learning_rate': ('darts', 'autoemb'),
                'controller_hidden_units': ('autoemb',),
                # The other methods keep the dense layout (config.py).
                'embedding_storage': config_lib.POOLED_METHODS}


def bool_or_auto(argument) -> Optional[bool]:
  """true/false (also a bool) or auto/none (None).

  Raises:
    ValueError: any other text.
  """
  if argument is None or isinstance(argument, bool):
    return argument
  text = str(argument).strip().lower()
  if text in ('auto', 'none'):
    return None
  if text in ('true', 't', '1', 'yes'):
    return True
  if text in ('false', 'f', '0', 'no'):
    return False
  raise ValueError(f'use true, false or auto, not {argument!r}')


def dataset_from_data_dir(data_dir: str) -> str:
  """The GroupLens name of `data_dir` (its folder or `.zip` name).

  Raises:
    errors.UserInputError: the name is not a GroupLens dataset's.
  """
  name = os.path.basename(os.path.normpath(data_dir))
  name = name[:-4] if name.endswith('.zip') else name
  if name in config_lib.DATASETS[1:]:
    return name
  raise errors.UserInputError(
      f'--data_dir={data_dir} is set but --dataset is not, and '
      f'{name!r} is not a GroupLens name; pass --dataset=<one of '
      f'{", ".join(config_lib.DATASETS[1:])}>')


def ignored_flag_notes(method: str, changed: Iterable[str]):
  """'note: ...' lines for the method-specific flags `method` ignores.

  Args:
    method: the method run.
    changed: names of the flags given a value other than their default.
  """
  changed = set(changed)
  return [f'note: --{name} applies to --method={"/".join(methods)} only; '
          'ignored' for name, methods in METHOD_FLAGS.items()
          if name in changed and method not in methods]
