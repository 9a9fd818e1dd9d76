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


def synthetic_assertions(transitions: int, *, fan_out: int = 10) -> str:
    """One assertion of each form for `synthetic_spec(transitions)`, every one a full pass over
    the graph (the proved ones search all of it, the refuted ones search until their
    counterexample, the furthest state for the `from *` and `leads to` forms)."""
    last = max(2, transitions // fan_out) - 1
    return "".join(f"    assert {line}\n" for line in (
        "reachable Done",
        f"reachable S{last}",
        "reachable Done from *",
        f"never Done -> S{last}",
        f"S{last} only from " + ", ".join(f"S{last - k}" for k in range(1, fan_out + 1)),
        "E3 only in S0 [refuted]",
        "S0 leads to Done [refuted]",
    ))


def with_assertions(spec: str, assertions: str) -> str:
    """`spec` (one machine) with `assertions` added to its block."""
    return spec[: spec.rstrip().rfind("}")] + assertions + "}\n"
