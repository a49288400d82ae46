"""Graph autodiff: a forward graph to a backward graph, with the ops' own gradient rules."""

from ember.compiler.autodiff.backward import AutodiffResult, differentiate, joint_backward
from ember.compiler.autodiff.emit import GraphEmitter
from ember.compiler.autodiff.recompute import default_rule, save_all

__all__ = ["AutodiffResult", "GraphEmitter", "default_rule", "differentiate", "joint_backward", "save_all"]
