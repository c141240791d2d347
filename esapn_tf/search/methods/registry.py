"""Which class implements each `--method` (config.METHODS)."""

from typing import Type

from esapn_tf.search.methods import base
from esapn_tf.search.methods import esapn
from esapn_tf.search.methods import fixed
from esapn_tf.search.methods import growth
from esapn_tf.search.methods import pruned
from esapn_tf.search.methods import soft

METHOD_CLASSES = {
    'esapn': esapn.Esapn,
    'fixed': fixed.Fixed,
    'darts': soft.Soft,
    'autoemb': soft.Soft,
    'mde': fixed.Mde,
    'pruned': pruned.Pruned,
    'random': growth.RandomGrowth,
    'threshold': growth.Threshold,
}


def method_class(name: str) -> Type[base.Method]:
  """The class of method `name`; KeyError for an unknown one (the config
  refuses those first)."""
  return METHOD_CLASSES[name]
