"""Synthetic specs of any size, for the compile-time benchmarks."""

from __future__ import annotations


def synthetic_spec(transitions: int, *, name: str = "Synthetic", fan_out: int = 10) -> str:
    """A machine with `transitions` transitions: states S0..Sn in a ring with `fan_out` events
    each, every state reachable and able to reach the final state."""
    states = max(2, transitions // fan_out)
    lines = [f'machine {name} "Synthetic machine: {transitions} transitions" {{',
             "    initial S0", "    final Done"]
    lines.extend(f"    state S{i}" for i in range(1, states))
    count = 0
    for i in range(states):
        for k in range(fan_out):
            if count >= transitions:
                break
            if k == 0 and i == states - 1:
                lines.append(f"    S{i} -> Done : Finish")
            else:
                target = (i + k + 1) % states
                lines.append(f"    S{i} -> S{target} : E{k}" + (" [usage]" if k == 1 else ""))
            count += 1
    lines.append("}")
    return "\n".join(lines) + "\n"
