"""Code that must type-check under `mypy --strict` (run by tests/test_lint.py): the public
API as users write it."""

from __future__ import annotations

from fsmc.runtime import EventBus, StateChanged, subscribe

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
