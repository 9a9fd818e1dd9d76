"""How spec names become Python names, and which ones generated code cannot take.

One module owns the rules so that the analyses (which report collisions) and the emitter (which
relies on there being none) agree.
"""

from __future__ import annotations

import builtins
import keyword
import re

from fsmc.runtime import Machine, MachineEnum

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# Attributes of the generated class and its runtime base: an event method, guard or action
# named like one of these would shadow it. Read from the runtime, so that a new method there
# is reserved here too.
RESERVED_MEMBERS = frozenset({
    "State", "Event", "SPEC", "mro", "restore", "entry_states",
    *(name for name in dir(Machine) if not name.startswith("_")),
})
# Enum members may not be named like the attributes of a member: Enum's (`name`, `value`) and,
# members being strings, str's methods (`upper`, `count`...).
RESERVED_ENUM_MEMBERS = frozenset(
    {"name", "value", "mro", *(name for name in dir(MachineEnum) if not name.startswith("_"))})
# Names the methods' annotations read in the class's scope: a method of that name would be
# what they mean.
ANNOTATION_NAMES = frozenset({"Any", "bool"})
# Module-level names of every generated module (imports, and the builtins its code reads): a
# machine, being a module-level class, may not take one.
MODULE_NAMES = frozenset({
    "annotations", "Any", "Dispatch", "Machine", "MachineEnum", "MachineSpec", "PostRecord",
    "TransitionSpec", "candidate", "dict", "bool", "IndexError", "NotImplementedError",
})


def snake_case(name: str) -> str:
    """`HAConfig` → `ha_config`, `OperationSuccessed` → `operation_successed`,
    `already_snake` → `already_snake`."""
    return _WORD_BOUNDARY.sub("_", name).lower()


def module_name(stem: str) -> str:
    """The generated module's name for a spec file's stem (`HAConfig.fsm` → `ha_config`)."""
    name = snake_case(re.sub(r"[^A-Za-z0-9_]", "_", stem))
    if not name or name[0].isdigit():
        name = "spec_" + name
    return name + "_" if keyword.iskeyword(name) else name


def is_identifier(name: str) -> bool:
    """An ASCII Python identifier (`[A-Za-z_][A-Za-z0-9_]*`, nothing around it)."""
    return name.isascii() and name.isidentifier()


def python_problem(name: str) -> str | None:
    """Why `name` cannot be used as a Python attribute in generated code, or None."""
    if keyword.iskeyword(name) or (keyword.issoftkeyword(name) and name in ("_",)):
        return f"`{name}` is a Python keyword"
    if name.startswith("_"):
        return f"`{name}` starts with `_`, which Python and enum reserve for private names"
    return None


def method_problem(method: str, machine: str = "") -> str | None:
    """Why `method` cannot be a method of the generated class of `machine`, or None."""
    if problem := python_problem(method):
        return problem
    if method in RESERVED_MEMBERS:
        return f"`{method}` is already an attribute of every generated machine"
    if method in vars(builtins) and method in ("type", "object", "super"):
        return f"`{method}` would shadow a builtin used by generated code"
    if method in ANNOTATION_NAMES or method == machine:
        return f"`{method}` is a name the type annotations of the generated methods use"
    return None


def machine_problem(name: str) -> str | None:
    """Why `name` cannot be the name of a generated class, or None."""
    if problem := python_problem(name):
        return problem
    if name in MODULE_NAMES:
        return f"`{name}` is a name the generated module itself uses"
    if name in ("State", "Event", "SPEC"):
        return f"`{name}` is an attribute of every generated machine, which its code reads"
    return None


def enum_member_problem(member: str) -> str | None:
    """Why `member` cannot be an enum member name, or None."""
    if problem := python_problem(member):
        return problem
    if member in RESERVED_ENUM_MEMBERS:
        return f"`{member}` is an attribute of every enum member"
    return None
