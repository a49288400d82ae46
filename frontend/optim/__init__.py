"""ember.optim: PyTorch's optimizers and learning-rate schedulers (``ember.optim.lr_scheduler``)."""

from __future__ import annotations

from ember.optim import lr_scheduler
from ember.optim.adagrad import Adadelta, Adagrad
from ember.optim.adam import Adam, Adamax, AdamW
from ember.optim.asgd import ASGD
from ember.optim.lbfgs import LBFGS
from ember.optim.optimizer import Optimizer
from ember.optim.rmsprop import RMSprop, Rprop
from ember.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "ASGD", "LBFGS", "RMSprop",
           "Rprop", "lr_scheduler"]
