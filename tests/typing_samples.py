"""Code that must type-check under `mypy --strict` (run by tests/test_lint.py): the public
API as users write it."""

from __future__ import annotations

from fsmc.runtime import EventBus, StateChanged, subscribe
from golden.two_machines import Foo, FooBar, Light

from generated.virtual_machine import VirtualMachine


class Meter:
    @subscribe(StateChanged)
    def record(self, event: StateChanged) -> None:
        self.last = event

    @subscribe
    def everything(self, event: object) -> None:
        pass

    @subscribe(topic="VirtualMachine.#")
    def vms(self, event: object) -> None:
        pass


def use() -> VirtualMachine.State:
    meter = Meter()
    meter.record(StateChanged("M", "r", "E", "A", "B", (), {}))
    bus = EventBus()
    bus.register(meter)
    vm = VirtualMachine("vm-1", bus=bus)
    state: VirtualMachine.State = vm.start_requested()
    return state


def several_machines_in_one_module() -> tuple[Light.State, Foo.State, FooBar.State]:
    light, foo, foo_bar = Light("l"), Foo("f"), FooBar("fb")
    foo.bar_baz()
    return light.switch(), foo.go(), foo_bar.baz()
