"""Meta-World v3 (metaworld 3.1.1) benchmark data used by :mod:`metarl.envs.meta_world`, as literals.

The class lists of ML10 and ML45 and, per env class, the box its ``rand_vec`` (object and goal
positions) is drawn from: ``env._random_reset_space`` of a freshly built env. ``tests/test_metaworld.py``
checks every entry against the installed ``metaworld`` package.

``MIN_SEPARATION`` records the rejection loops in the envs' ``reset_model``: Meta-World redraws
``rand_vec`` while the object's and the goal's ``xy`` (``rand_vec[0:2]`` and ``rand_vec[3:5]``, or a
fixed point) are closer than a threshold. With a frozen ``rand_vec`` that loop never ends, so metarl
only draws and accepts vectors that pass it.
"""

from __future__ import annotations

__all__ = [
    "ALL_ENV_NAMES",
    "MIN_SEPARATION",
    "ML10_TEST",
    "ML10_TRAIN",
    "ML45_TEST",
    "ML45_TRAIN",
    "RESET_SPACES",
]

ML10_TRAIN: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "sweep-v3",
    "basketball-v3",
)
ML10_TEST: tuple[str, ...] = (
    "drawer-open-v3",
    "door-close-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "lever-pull-v3",
)
ML45_TRAIN: tuple[str, ...] = (
    "assembly-v3",
    "basketball-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-open-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "push-back-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-wall-v3",
    "push-v3",
    "reach-wall-v3",
    "reach-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
)
ML45_TEST: tuple[str, ...] = (
    "bin-picking-v3",
    "box-close-v3",
    "hand-insert-v3",
    "door-lock-v3",
    "door-unlock-v3",
)

#: env name -> (low, high) of ``_random_reset_space``; ``rand_vec`` has ``len(low)`` entries.
RESET_SPACES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "assembly-v3": ((0.0, 0.6, 0.02, -0.1, 0.75, 0.1), (0.0, 0.6, 0.02, 0.1, 0.85, 0.1)),
    "basketball-v3": ((-0.1, 0.6, 0.0299, -0.1, 0.85, 0.0), (0.1, 0.7, 0.0301, 0.1, 0.9000001, 0.0)),
    "bin-picking-v3": ((-0.21, 0.65, 0.02, 0.1199, 0.699, -0.001), (-0.03, 0.75, 0.02, 0.1201, 0.701, 0.001)),
    "box-close-v3": ((-0.05, 0.5, 0.02, -0.1, 0.7, 0.133), (0.05, 0.55, 0.02, 0.1, 0.8, 0.133)),
    "button-press-topdown-v3": ((-0.1, 0.8, 0.115), (0.1, 0.9, 0.115)),
    "button-press-topdown-wall-v3": ((-0.1, 0.8, 0.115), (0.1, 0.9, 0.115)),
    "button-press-v3": ((-0.1, 0.85, 0.115), (0.1, 0.9, 0.115)),
    "button-press-wall-v3": ((-0.05, 0.85, 0.1149), (0.05, 0.9, 0.1151)),
    "coffee-button-v3": ((-0.1, 0.8, -0.001), (0.1, 0.9, 0.001)),
    "coffee-pull-v3": ((-0.05, 0.7, -0.001, -0.1, 0.55, -0.001), (0.05, 0.75, 0.001, 0.1, 0.65, 0.001)),
    "coffee-push-v3": ((-0.1, 0.55, -0.001, -0.05, 0.7, -0.001), (0.1, 0.65, 0.001, 0.05, 0.75, 0.001)),
    "dial-turn-v3": ((-0.1, 0.7, 0.0), (0.1, 0.8, 0.0)),
    "disassemble-v3": ((0.0, 0.6, 0.025, -0.1, 0.6, 0.1699), (0.1, 0.75, 0.02501, 0.1, 0.75, 0.1701)),
    "door-close-v3": ((0.0, 0.85, 0.15), (0.1, 0.95, 0.15)),
    "door-lock-v3": ((-0.1, 0.8, 0.15), (0.1, 0.85, 0.15)),
    "door-open-v3": ((0.0, 0.85, 0.15), (0.1, 0.95, 0.15)),
    "door-unlock-v3": ((-0.1, 0.8, 0.15), (0.1, 0.85, 0.15)),
    "hand-insert-v3": ((-0.1, 0.6, 0.05, -0.04, 0.8, -0.0201), (0.1, 0.7, 0.05, 0.04, 0.88, -0.0199)),
    "drawer-close-v3": ((-0.1, 0.9, 0.0), (0.1, 0.9, 0.0)),
    "drawer-open-v3": ((-0.1, 0.9, 0.0), (0.1, 0.9, 0.0)),
    "faucet-open-v3": ((-0.05, 0.8, 0.0), (0.05, 0.85, 0.0)),
    "faucet-close-v3": ((-0.1, 0.8, 0.0), (0.1, 0.85, 0.0)),
    "hammer-v3": ((-0.1, 0.4, 0.0), (0.1, 0.5, 0.0)),
    "handle-press-side-v3": ((-0.35, 0.65, -0.001), (-0.25, 0.75, 0.001)),
    "handle-press-v3": ((-0.1, 0.8, -0.001), (0.1, 0.9, 0.001)),
    "handle-pull-side-v3": ((-0.35, 0.65, 0.0), (-0.25, 0.75, 0.0)),
    "handle-pull-v3": ((-0.1, 0.8, -0.001), (0.1, 0.9, 0.001)),
    "lever-pull-v3": ((-0.1, 0.7, 0.0), (0.1, 0.8, 0.0)),
    "pick-place-wall-v3": ((-0.05, 0.6, 0.015, -0.05, 0.85, 0.05), (0.05, 0.65, 0.015, 0.05, 0.9, 0.3)),
    "pick-out-of-hole-v3": ((0.0, 0.75, 0.02, -0.1, 0.5, 0.15), (0.0, 0.75, 0.02, 0.1, 0.6, 0.3)),
    "pick-place-v3": ((-0.1, 0.6, 0.02, -0.1, 0.8, 0.05), (0.1, 0.7, 0.02, 0.1, 0.9, 0.3)),
    "plate-slide-v3": ((0.0, 0.6, 0.0, -0.1, 0.85, 0.0), (0.0, 0.6, 0.0, 0.1, 0.9, 0.0)),
    "plate-slide-side-v3": ((0.0, 0.6, 0.0, -0.3, 0.54, 0.0), (0.0, 0.6, 0.0, -0.25, 0.66, 0.0)),
    "plate-slide-back-v3": ((0.0, 0.85, 0.0, -0.1, 0.6, 0.015), (0.0, 0.85, 0.0, 0.1, 0.6, 0.015)),
    "plate-slide-back-side-v3": ((-0.25, 0.6, 0.0, -0.05, 0.6, 0.015), (-0.25, 0.6, 0.0, 0.15, 0.6, 0.015)),
    "peg-insert-side-v3": ((0.0, 0.5, 0.02, -0.35, 0.4, -0.001), (0.2, 0.7, 0.02, -0.25, 0.7, 0.001)),
    "peg-unplug-side-v3": ((-0.25, 0.6, -0.001), (-0.15, 0.8, 0.001)),
    "soccer-v3": ((-0.1, 0.6, 0.03, -0.1, 0.8, 0.0), (0.1, 0.7, 0.03, 0.1, 0.9, 0.0)),
    "stick-push-v3": ((-0.08, 0.58, 0.0, 0.399, 0.55, 0.1319), (-0.03, 0.62, 0.001, 0.401, 0.6, 0.1321)),
    "stick-pull-v3": ((-0.1, 0.55, 0.0, 0.35, 0.45, 0.0199), (0.0, 0.65, 0.001, 0.45, 0.55, 0.0201)),
    "push-v3": ((-0.1, 0.6, 0.02, -0.1, 0.8, 0.01), (0.1, 0.7, 0.02, 0.1, 0.9, 0.02)),
    "push-wall-v3": ((-0.05, 0.6, 0.015, -0.05, 0.85, 0.01), (0.05, 0.65, 0.015, 0.05, 0.9, 0.02)),
    "push-back-v3": ((-0.1, 0.8, 0.02, -0.1, 0.6, 0.0199), (0.1, 0.85, 0.02, 0.1, 0.7, 0.0201)),
    "reach-v3": ((-0.1, 0.6, 0.02, -0.1, 0.8, 0.05), (0.1, 0.7, 0.02, 0.1, 0.9, 0.3)),
    "reach-wall-v3": ((-0.05, 0.6, 0.015, -0.05, 0.85, 0.05), (0.05, 0.65, 0.015, 0.05, 0.9, 0.3)),
    "shelf-place-v3": ((-0.1, 0.5, 0.019, -0.1, 0.8, 0.299), (0.1, 0.6, 0.021, 0.1, 0.9, 0.301)),
    "sweep-into-v3": ((-0.1, 0.6, 0.02, -0.001, 0.8399, 0.0199), (0.1, 0.7, 0.02, 0.001, 0.8401, 0.0201)),
    "sweep-v3": ((-0.1, 0.6, 0.02), (0.1, 0.7, 0.02)),
    "window-open-v3": ((-0.1, 0.7, 0.16), (0.1, 0.9, 0.16)),
    "window-close-v3": ((0.0, 0.75, 0.2), (0.0, 0.9, 0.2)),
}

#: Every Meta-World v3 env name, in the package's order.
ALL_ENV_NAMES: tuple[str, ...] = tuple(RESET_SPACES)


#: env name -> (threshold, reference): ``rand_vec`` must satisfy ``|rand_vec[0:2] - ref| >= threshold``,
#: where ``ref`` is ``rand_vec[3:5]`` when ``None`` (from each env's ``reset_model``).
MIN_SEPARATION: dict[str, tuple[float, tuple[float, float] | None]] = {
    "assembly-v3": (0.1, None),
    "basketball-v3": (0.15, None),
    "box-close-v3": (0.25, None),
    "coffee-pull-v3": (0.15, None),
    "coffee-push-v3": (0.15, None),
    "disassemble-v3": (0.1, None),
    "hand-insert-v3": (0.15, None),
    "peg-insert-side-v3": (0.1, None),
    "pick-out-of-hole-v3": (0.15, None),
    "pick-place-v3": (0.15, None),
    "pick-place-wall-v3": (0.15, None),
    "push-back-v3": (0.15, None),
    "push-v3": (0.15, None),
    "push-wall-v3": (0.15, None),
    "reach-v3": (0.15, None),
    "reach-wall-v3": (0.15, None),
    "shelf-place-v3": (0.1, None),
    "soccer-v3": (0.15, None),
    "stick-pull-v3": (0.1, None),
    "stick-push-v3": (0.1, None),
    "sweep-into-v3": (0.15, (0.0, 0.84)),
}
