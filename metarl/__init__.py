"""metarl: meta-reinforcement-learning task families, learners and meta-test runners.

The data flow: a :class:`TaskFamily` -> its fixed :class:`Task` splits -> a multi-task vector env
(:func:`make_vec`) -> rollouts (:func:`collect`) -> a :class:`MetaLearner` adapts -> meta-test on
held-out tasks (:func:`evaluate`) -> an :class:`EvalResult` report.
"""

from metarl.evaluation import Adaptation, EvalResult, MetaLearner, bootstrap_ci, evaluate
from metarl.family import SPLITS, TaskEnv, TaskFamily, TaskNotSetError, TaskWrapper
from metarl.registry import FamilySpec, family_spec, list_families, make_family, register_family
from metarl.rollout import EpisodeBatch, Policy, StatefulPolicy, collect
from metarl.task import Choice, Dirichlet, LogUniform, Normal, Param, ParameterSpace, Task, Uniform
from metarl.vector import BatchedTaskVectorEnv, SyncTaskVectorEnv, make_vec

__version__ = "0.1.0"

__all__ = [
    "SPLITS",
    "Adaptation",
    "BatchedTaskVectorEnv",
    "Choice",
    "Dirichlet",
    "EpisodeBatch",
    "EvalResult",
    "FamilySpec",
    "LogUniform",
    "MetaLearner",
    "Normal",
    "Param",
    "ParameterSpace",
    "Policy",
    "StatefulPolicy",
    "SyncTaskVectorEnv",
    "Task",
    "TaskEnv",
    "TaskFamily",
    "TaskNotSetError",
    "TaskWrapper",
    "Uniform",
    "__version__",
    "bootstrap_ci",
    "collect",
    "evaluate",
    "family_spec",
    "list_families",
    "make_family",
    "make_vec",
    "register_family",
]

import metarl.envs  # noqa: F401  (registers the built-in families)
