"""Whether a router's split is the one a rollout's state stands for. Pure.

The controller reads the split back before its first tick: a gateway left at 90/10 by a
controller that died, with the state deleted, would otherwise send 10% of the users to a
canary while the rollout says 0%.
"""

from __future__ import annotations

from modelcanary.rollout.ports import Split
from modelcanary.rollout.spec import RolloutSpec
from modelcanary.rollout.state import RolloutState


def wanted_split(spec: RolloutSpec, state: RolloutState | None) -> Split:
    """The split the state stands for: its weight to the canary, the rest to stable, no
    other version; once promoted, the canary is the stable one. No state: all to stable."""
    state = state or RolloutState()
    stable, canary = spec.stable.version, spec.canary.version
    weights = {stable: 100 - state.weight}
    if state.weight > 0:
        weights[canary] = state.weight
    return Split(weights, canary if state.phase == "Promoted" else stable)


def split_mismatch(spec: RolloutSpec, state: RolloutState | None, actual: Split) -> str | None:
    """How the router's split differs from the state's, in words; None when they agree
    (a version at 0% counts as absent)."""
    wanted = wanted_split(spec, state)
    versions = set(wanted.weights) | set(actual.weights)
    same = all(actual.weights.get(v, 0) == wanted.weights.get(v, 0) for v in versions)
    if same and actual.stable == wanted.stable:
        return None
    where = f"the {state.phase} rollout at {state.weight}%" if state else "no rollout state"
    return (
        f"the gateway splits {spec.model} {describe_split(actual)} but {where} stands for "
        f"{describe_split(wanted)}"
    )


def describe_split(split: Split) -> str:
    """e.g. `90% to 1, 10% to 2 (stable 1)`: the largest share first, versions at 0% left
    out."""
    ordered = sorted(split.weights.items(), key=lambda vw: (-vw[1], vw[0]))
    shares = [f"{w}% to {v}" for v, w in ordered if w > 0]
    return f"{', '.join(shares) or 'nothing'} (stable {split.stable})"
