"""Returns, the linear feature baseline and generalised advantage estimation, on padded episodes.

All functions take episodes padded to a common length ``T`` with a boolean ``mask`` (the layout of
:class:`metarl.EpisodeBatch`), with any number of leading axes (e.g. ``(tasks, episodes, T)``), and
work in float64 NumPy: they are fitted per task and never differentiated.
"""

from __future__ import annotations

import numpy as np

from metarl.rollout import EpisodeBatch

__all__ = ["baseline_features", "discounted_returns", "fit_linear_baseline", "gae", "task_advantages"]


def discounted_returns(rewards: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """``sum_j gamma^j r_{t+j}`` within each episode, zero on padding; shape of ``rewards``."""
    rewards = np.where(mask, rewards, 0.0)
    out = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[:-1])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        out[..., t] = running
    return np.where(mask, out, 0.0)


def baseline_features(observations: np.ndarray, time_offset: np.ndarray | None = None) -> np.ndarray:
    """The standard linear-baseline features (Duan et al. 2016, rllab's ``LinearFeatureBaseline``).

    For observations ``(..., T, obs_dim)``: ``[o, o^2, t/100, (t/100)^2, (t/100)^3, 1]`` with the
    observation clipped to ``[-10, 10]`` and ``t`` the step index in the episode; the time features
    let one linear function represent the value's dependence on the remaining horizon.

    Args:
        observations: ``(..., T, obs_dim)``.
        time_offset: optional ``(...)`` integer start time per sequence (for single final states).
    """
    obs = np.clip(observations.reshape(*observations.shape[:-1], -1).astype(np.float64), -10.0, 10.0)
    T = obs.shape[-2]
    t = np.broadcast_to(np.arange(T, dtype=np.float64) / 100.0, obs.shape[:-1])
    if time_offset is not None:
        t = t + np.asarray(time_offset, dtype=np.float64)[..., None] / 100.0
    t = t[..., None]
    return np.concatenate([obs, obs**2, t, t**2, t**3, np.ones_like(t)], axis=-1)


def fit_linear_baseline(
    features: np.ndarray, targets: np.ndarray, mask: np.ndarray, reg: float = 1e-5, max_tries: int = 5
) -> np.ndarray:
    """Ridge least squares ``argmin_w |X w - y|^2 + reg |w|^2`` over the masked rows.

    The leading axes of ``features`` before the last two (rows, features) are independent problems
    (e.g. one per task). As in rllab, if the solve is not finite the regulariser is raised tenfold.

    Args:
        features: ``(..., N, F)``.
        targets: ``(..., N)``.
        mask: ``(..., N)``; rows where it is false are ignored.
        reg: the ridge coefficient.

    Returns:
        coefficients ``(..., F)``.
    """
    if reg < 0:
        raise ValueError(f"reg must be non-negative, got {reg!r}")
    w = mask.astype(np.float64)[..., None]
    x = features * w
    xtx = np.swapaxes(x, -1, -2) @ x
    xty = np.swapaxes(x, -1, -2) @ (targets * mask)[..., None]
    eye = np.eye(features.shape[-1])
    for _ in range(max_tries):
        try:
            coef = np.linalg.solve(xtx + reg * eye, xty)[..., 0]
        except np.linalg.LinAlgError:
            coef = np.full(xty.shape[:-1], np.nan)
        if np.all(np.isfinite(coef)):
            return coef
        reg = max(reg * 10.0, 1e-8)
    return np.zeros(xty.shape[:-1])


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray,
    terminations: np.ndarray,
    final_values: np.ndarray,
    gamma: float = 0.99,
    lam: float = 1.0,
) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016) on padded episodes.

    ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)`` and ``A_t = delta_t + gamma lam A_{t+1}``. After
    the last step of an episode, ``V(s_{t+1})`` is 0 if the MDP terminated and ``final_values`` (the
    value of the observation after the last step) if the time limit truncated it: truncation is not
    termination (Pardo et al. 2018, "Time Limits in Reinforcement Learning").

    Args:
        rewards, values, mask, terminations: ``(..., T)``.
        final_values: ``(...)``, value of each episode's final observation.

    Returns:
        advantages ``(..., T)``, zero on padding.
    """
    mask = mask.astype(bool)
    lengths = mask.sum(-1)
    T = rewards.shape[-1]
    next_values = np.zeros_like(values, dtype=np.float64)
    next_values[..., :-1] = values[..., 1:]
    last = np.arange(T) == (lengths[..., None] - 1)
    terminated = np.take_along_axis(terminations, np.maximum(lengths - 1, 0)[..., None], -1)[..., 0]
    bootstrap = np.where(terminated, 0.0, final_values)
    next_values = np.where(last, bootstrap[..., None], next_values)
    deltas = np.where(mask, rewards + gamma * next_values - values, 0.0)
    adv = np.zeros_like(deltas)
    running = np.zeros(deltas.shape[:-1])
    for t in range(T - 1, -1, -1):
        # ``running`` holds A_{t+1}, which is zero past the end of the episode.
        running = np.where(mask[..., t], deltas[..., t] + gamma * lam * running, 0.0)
        adv[..., t] = running
    return adv


def task_advantages(
    episodes: EpisodeBatch, gamma: float = 0.99, lam: float = 1.0, reg: float = 1e-5
) -> np.ndarray:
    """Advantages ``(n_tasks, episodes_per_task, T)`` with a linear baseline fitted per task.

    ``episodes`` is a task-major :class:`metarl.EpisodeBatch`; each task's baseline is fitted to the
    discounted returns of that task's episodes only (MAML, Finn et al. 2017, section 5.3).
    """
    ep = episodes.by_task()
    n_tasks, n_eps, T = ep.rewards.shape
    feats = baseline_features(ep.observations)
    returns = discounted_returns(ep.rewards, ep.mask, gamma)
    coef = fit_linear_baseline(
        feats.reshape(n_tasks, n_eps * T, -1), returns.reshape(n_tasks, -1), ep.mask.reshape(n_tasks, -1), reg
    )
    values = np.einsum("kntf,kf->knt", feats, coef)
    final_feats = baseline_features(ep.final_observations[:, :, None, :], time_offset=ep.lengths)[:, :, 0]
    final_values = np.einsum("knf,kf->kn", final_feats, coef)
    return gae(ep.rewards, values, ep.mask, ep.terminations, final_values, gamma, lam)
