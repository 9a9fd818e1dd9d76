"""A simulated CloudStack zone: accounts, their networks, templates, and user VMs with their
volumes, NICs, public IPs and snapshots, driven through the generated machines.

Every step follows a transition of the CloudStack specs (`specs/*.fsm`), with random failures
where CloudStack has them: deployments that fail or go to Error, operations that fail and are
retried, agents reporting VMs stopped or shut down (crashes), power-state reports, failed
stops, migrations, snapshot and upload failures, releases that must be retried. Now and then
a careless client fires an event the resource's state does not allow (`Simulation.misfire`).

Every event's payload names the resource's `account`; volume events that set a size carry
`size_gb` (the request, and the completion of a resize), as the usage meter expects. Public
IPs go back to a pool when released and are reused, possibly by another account.

Rates are per simulated hour or day; durations are exponential (running for about two days,
stopped for about one) or uniform (operations take minutes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsmc.runtime.dispatch import Bus

from generated.network import Network
from generated.nic import Nic
from generated.virtual_machine import VirtualMachine
from generated.virtual_machine_template import VirtualMachineTemplate

from .resources import ROOT_SIZES, Resources, Step
from .simulation import AnyMachine, Process, Simulation

__all__ = ["Cloud"]


@dataclass
class Tenant:
    """One user VM and what it owns."""

    account: str
    vm: AnyMachine
    nic: AnyMachine
    root: AnyMachine
    data: list[AnyMachine] = field(default_factory=list)
    ip: AnyMachine | None = None


class Cloud(Resources):
    """`Cloud(sim, bus, accounts, vms)`: call `populate()`, then `sim.run()`."""

    def __init__(self, sim: Simulation, bus: Bus, *, accounts: int, vms: int) -> None:
        super().__init__(sim, bus)
        self.accounts = [f"acct-{n:02d}" for n in range(1, accounts + 1)]
        self.vms = vms

    def populate(self) -> None:
        """Schedule every process: networks and templates at once, VMs arriving over the
        first 80% of the period (40% of them in the first hour); accounts are unequal."""
        sim, rng = self.sim, self.sim.rng
        for account in self.accounts:
            sim.spawn(self.network_life(account, temporary=False), sim.minutes(0, 10))
            if sim.chance(0.3):
                sim.spawn(self.network_life(account, temporary=True),
                          rng.uniform(0, sim.duration / 2))
        for _ in range(max(3, len(self.accounts) // 2)):
            sim.spawn(self.template_upload(rng.choice(self.accounts)), sim.minutes(0, 120))
        weights = [1.0 / (n + 1) ** 0.8 for n in range(len(self.accounts))]
        for _ in range(self.vms):
            account = rng.choices(self.accounts, weights)[0]
            when = sim.minutes(0, 60) if sim.chance(0.4) else rng.uniform(0, 0.8 * sim.duration)
            sim.spawn(self.vm_life(account), when)

    # -- networks and templates -------------------------------------------------------------

    def network_life(self, account: str, *, temporary: bool) -> Process:
        sim, pay = self.sim, {"account": account}
        net = self.new(Network, "net")
        while True:
            sim.fire(net, "ImplementNetwork", **pay)
            yield sim.minutes(1, 5)
            if sim.chance(0.9):
                sim.fire(net, "OperationSucceeded", **pay)
                break
            sim.fire(net, "OperationFailed", **pay)  # Implementing -> Shutdown
            yield sim.minutes(1, 5)
            sim.fire(net, "OperationSucceeded", **pay)  # Shutdown -> Allocated
            yield sim.minutes(5, 30)
        if not temporary:
            return
        yield sim.hours(72)
        sim.fire(net, "DestroyNetwork", **pay)  # Implemented -> Shutdown
        yield sim.minutes(1, 5)
        while sim.chance(0.1):
            sim.fire(net, "OperationFailed", **pay)  # a failed shutdown is retried
            yield sim.minutes(5, 15)
        sim.fire(net, "OperationSucceeded", **pay)
        yield sim.minutes(1, 5)
        sim.fire(net, "DestroyNetwork", **pay)  # Allocated -> Destroy

    def template_upload(self, account: str) -> Process:
        sim, pay = self.sim, {"account": account}
        template = self.new(VirtualMachineTemplate, "tmpl", state="NotUploaded")
        yield sim.minutes(1, 30)
        if sim.chance(0.1):
            sim.fire(template, "OperationTimeout", **pay)  # never started: abandoned
            return
        sim.fire(template, "UploadRequested", **pay)
        yield sim.minutes(5, 60)
        outcome = sim.rng.choices(("OperationSucceeded", "OperationFailed", "OperationTimeout"),
                                  (0.9, 0.06, 0.04))[0]
        sim.fire(template, outcome, **pay)

    # -- a user VM's life --------------------------------------------------------------------

    def vm_life(self, account: str) -> Process:
        sim, pay = self.sim, {"account": account}
        root = yield from self.new_volume(account, sim.rng.choice(ROOT_SIZES), data=False)
        tenant = Tenant(account, self.new(VirtualMachine, "vm"), self.new(Nic, "nic"), root)
        for _ in range(sim.rng.choice((0, 0, 1, 1, 2))):
            tenant.data.append((yield from self.new_volume(account, 0, data=True)))
        if sim.chance(0.5):
            tenant.ip = yield from self.acquire_ip(account)
        if sim.chance(0.02):  # deployment failed for good: Error, then destroyed
            sim.fire(tenant.vm, "OperationFailedToError", **pay)
            yield sim.minutes(10, 240)
            sim.fire(tenant.vm, "DestroyRequested", **pay)  # Error -> Expunging
            yield from self.dispose(tenant)
            return
        while True:
            if (yield from self.start(tenant)):
                yield from self.run(tenant)
            yield sim.hours(24)
            if sim.chance(0.8):
                continue
            sim.fire(tenant.vm, "DestroyRequested", **pay)
            yield from self.release_ip(tenant)
            for volume in tenant.data:
                yield from self.destroy_volume(volume, pay)
            yield sim.hours(12)
            if sim.chance(0.9):
                sim.fire(tenant.vm, "ExpungeOperation", **pay)  # Destroyed -> Expunging
                yield from self.dispose(tenant)
                return
            sim.fire(tenant.vm, "RecoveryRequested", **pay)  # Destroyed -> Stopped
            for volume in tenant.data:
                sim.fire(volume, "RecoverRequested", **pay)
            yield sim.minutes(1, 30)

    def start(self, tenant: Tenant) -> Step[bool]:
        sim, vm, pay = self.sim, tenant.vm, {"account": tenant.account}
        if sim.chance(0.02):  # found running by the power-state sync
            sim.fire(vm, "FollowAgentPowerOnReport", **pay)
            sim.fire(tenant.nic, "ReservationRequested", **pay)
            yield sim.minutes(0.1, 1)
            sim.fire(tenant.nic, "OperationCompleted", **pay)
            return True
        sim.fire(vm, "StartRequested", **pay)
        sim.fire(tenant.nic, "ReservationRequested", **pay)
        yield sim.minutes(0.5, 3)
        if sim.chance(0.05):
            sim.fire(vm, "OperationRetry", **pay)
            yield sim.minutes(1, 5)
        if sim.chance(0.04):
            sim.fire(tenant.nic, "OperationFailed", **pay)
            sim.fire(vm, "OperationFailed", **pay)  # Starting -> Stopped
            return False
        sim.fire(tenant.nic, "OperationCompleted", **pay)
        sim.fire(vm, "AgentReportRunning" if sim.chance(0.05) else "OperationSucceeded", **pay)
        return True

    def run(self, tenant: Tenant) -> Step[None]:
        """Running for about two days, with incidents about every eight hours; ends Stopped."""
        sim, vm, pay = self.sim, tenant.vm, {"account": tenant.account}
        until = sim.now + sim.hours(48)
        while (wait := sim.hours(8)) < until - sim.now:
            yield wait
            incident = sim.rng.random()
            if incident < 0.25:
                sim.fire(vm, "MigrationRequested", **pay)
                yield sim.minutes(1, 10)
                sim.fire(vm, "OperationFailed" if sim.chance(0.1) else "OperationSucceeded",
                         **pay)  # either way the VM runs on
            elif incident < 0.45:
                yield from self.snapshot(sim.rng.choice([tenant.root, *tenant.data]), pay)
            elif incident < 0.52 and tenant.data:
                yield from self.resize(sim.rng.choice(tenant.data), pay)
            elif incident < 0.70:
                sim.fire(vm, "AgentReportRunning", **pay)
            elif incident < 0.85:
                sim.misfire(sim.rng.choice([vm, vm, vm, tenant.root, tenant.nic]), **pay)
            elif incident < 0.92:  # crash: the agent reports the VM down
                crash = sim.rng.choice(("AgentReportStopped", "AgentReportShutdowned",
                                        "FollowAgentPowerOffReport"))
                sim.fire(vm, crash, **pay)
                yield from self.release_nic(tenant)
                return
        yield max(1.0, until - sim.now)
        while True:
            sim.fire(vm, "StopRequested", **pay)
            sim.fire(tenant.nic, "ReleaseRequested", **pay)
            yield sim.minutes(0.5, 2)
            if sim.chance(0.97):
                sim.fire(tenant.nic, "OperationCompleted", **pay)
                sim.fire(vm, "OperationSucceeded", **pay)  # Stopping -> Stopped
                return
            sim.fire(tenant.nic, "OperationFailed", **pay)  # Releasing -> Reserved
            sim.fire(vm, "OperationFailed", **pay)  # a failed stop: Running again
            yield sim.minutes(5, 30)

    def release_nic(self, tenant: Tenant) -> Step[None]:
        self.sim.fire(tenant.nic, "ReleaseRequested", account=tenant.account)
        yield self.sim.minutes(0.1, 1)
        self.sim.fire(tenant.nic, "OperationCompleted", account=tenant.account)

    def dispose(self, tenant: Tenant) -> Step[None]:
        """Expunge a VM (already in Expunging) and its volumes, releasing its IP."""
        sim, pay = self.sim, {"account": tenant.account}
        yield from self.release_ip(tenant)
        while sim.chance(0.05):
            yield sim.minutes(5, 30)
            sim.fire(tenant.vm, "OperationFailed", **pay)  # a failed expunge, retried
        if tenant.root.state.name == "Ready":
            yield from self.destroy_volume(tenant.root, pay)
        for volume in tenant.data:
            if volume.state.name == "Ready":
                yield from self.destroy_volume(volume, pay)
        for volume in [tenant.root, *tenant.data]:
            yield sim.minutes(1, 10)
            yield from self.expunge_volume(volume, pay)

    def release_ip(self, tenant: Tenant) -> Step[None]:
        if tenant.ip is not None:
            ip, tenant.ip = tenant.ip, None
            yield from self.release_address(ip, tenant.account)
