"""Volumes, snapshots and public IPs of the simulated cloud (`fsmc.contrib.cloud`): how
they are created, used and removed, step by step along the CloudStack specs, with their
failures. Each step is a generator to be run with `yield from` inside a process of
`fsmc.contrib.simulation`; it returns what it made.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from typing import Any, TypeVar

from fsmc.runtime.dispatch import Bus

from generated.ip_address import IpAddress
from generated.snapshot import Snapshot
from generated.volume import Volume

from .simulation import AnyMachine, Process, Simulation

__all__ = ["DATA_SIZES", "ROOT_SIZES", "Resources", "Step"]

T = TypeVar("T")
Step = Generator[float, None, T]

ROOT_SIZES = (20, 40, 50, 80, 100)
DATA_SIZES = (10, 50, 100, 250, 500, 1000)


class Resources:
    """Makes machines on `bus` (numbered per kind) and drives volumes, snapshots and IPs."""

    def __init__(self, sim: Simulation, bus: Bus) -> None:
        self.sim = sim
        self.bus = bus
        self.created: Counter[str] = Counter()
        self.free_ips: list[AnyMachine] = []
        self.sizes: dict[object, int] = {}

    def new(self, cls: type[AnyMachine], prefix: str, state: str | None = None) -> AnyMachine:
        """A new resource of `cls`, numbered per machine (`vol-00001`)."""
        self.created[cls.SPEC.name] += 1
        return cls.create(f"{prefix}-{self.created[cls.SPEC.name]:05d}", bus=self.bus,
                          state=state)


    def new_volume(self, account: str, size: int, *, data: bool) -> Step[AnyMachine]:
        """A new volume, Ready: created on primary storage (retried until it works), or, for
        a tenth of data volumes, uploaded from a browser and copied to primary storage."""
        sim, pay = self.sim, {"account": account}
        size = size or sim.rng.choice(DATA_SIZES)
        if data and sim.chance(0.1):
            volume = self.new(Volume, "vol", state="NotUploaded")
            self.sizes[volume.resource_id] = size
            sim.fire(volume, "UploadRequested", size_gb=size, **pay)
            yield sim.minutes(5, 60)
            sim.fire(volume, "OperationSucceeded", **pay)  # -> Uploaded
            yield sim.minutes(1, 10)
            sim.fire(volume, "CopyRequested", **pay)
            yield sim.minutes(1, 10)
            sim.fire(volume, "OperationSucceeded", **pay)  # Copying -> Ready [usage]
            return volume
        volume = self.new(Volume, "vol")
        self.sizes[volume.resource_id] = size
        sim.fire(volume, "CreateRequested", size_gb=size, **pay)
        while True:
            yield sim.minutes(0.5, 5)
            if sim.chance(0.05):
                sim.fire(volume, "OperationRetry", **pay)
                continue
            if sim.chance(0.96):
                sim.fire(volume, "OperationSucceeded", **pay)
                break
            sim.fire(volume, "OperationFailed", **pay)  # back to Allocated
            yield sim.minutes(1, 10)
            sim.fire(volume, "CreateRequested", size_gb=size, **pay)
        if data:
            yield sim.minutes(0.1, 1)
            sim.fire(volume, "AttachRequested", **pay)
            yield sim.minutes(0.1, 1)
            sim.fire(volume, "OperationFailed" if sim.chance(0.03) else "OperationSucceeded",
                     **pay)  # Attaching -> Ready either way
        return volume

    def resize(self, volume: AnyMachine, pay: dict[str, Any]) -> Step[None]:
        """Grow a volume to a larger size (nothing happens when it is the largest)."""
        larger = [size for size in DATA_SIZES if size > self.sizes[volume.resource_id]]
        if not larger:
            return
        self.sim.fire(volume, "ResizeRequested", **pay)
        yield self.sim.minutes(1, 10)
        if self.sim.chance(0.1):
            self.sim.fire(volume, "OperationFailed", **pay)  # Resizing -> Ready, same size
            return
        size = self.sizes[volume.resource_id] = self.sim.rng.choice(larger)
        self.sim.fire(volume, "OperationSucceeded", size_gb=size, **pay)  # [usage]

    def snapshot(self, volume: AnyMachine, pay: dict[str, Any]) -> Step[None]:
        sim = self.sim
        snap = self.new(Snapshot, "snap")
        sim.fire(volume, "SnapshotRequested", **pay)
        sim.fire(snap, "CreateRequested", **pay)
        yield sim.minutes(1, 10)
        if sim.chance(0.04):
            sim.fire(snap, "OperationFailed", **pay)  # Creating -> Error
            sim.fire(volume, "OperationFailed", **pay)  # Snapshotting -> Ready
            return
        sim.fire(snap, "OperationSucceeded", **pay)  # -> CreatedOnPrimary
        sim.fire(volume, "OperationSucceeded", **pay)
        sim.spawn(self.snapshot_backup(snap, pay), sim.minutes(1, 10))

    def snapshot_backup(self, snap: AnyMachine, pay: dict[str, Any]) -> Process:
        sim = self.sim
        if sim.chance(0.2):
            sim.fire(snap, "OperationNotPerformed", **pay)  # kept on primary: BackedUp
        else:
            sim.fire(snap, "BackupToSecondary", **pay)
            yield sim.minutes(5, 60)
            if sim.chance(0.05):
                sim.fire(snap, "OperationFailed", **pay)  # BackingUp -> Error
                return
            sim.fire(snap, "OperationSucceeded", **pay)
        yield sim.hours(72)  # retention
        while True:
            sim.fire(snap, "DestroyRequested", **pay)
            yield sim.minutes(1, 10)
            if sim.chance(0.95):
                sim.fire(snap, "OperationSucceeded", **pay)  # -> Destroyed
                return
            sim.fire(snap, "OperationFailed", **pay)  # back to BackedUp
            yield sim.minutes(10, 60)

    def destroy_volume(self, volume: AnyMachine, pay: dict[str, Any]) -> Step[None]:
        self.sim.fire(volume, "DestroyRequested", **pay)  # Ready -> Destroy
        yield self.sim.minutes(0.5, 5)
        self.sim.fire(volume, "OperationSucceeded", **pay)  # Destroy -> Destroy [usage]

    def expunge_volume(self, volume: AnyMachine, pay: dict[str, Any]) -> Step[None]:
        while True:
            self.sim.fire(volume, "ExpungingRequested", **pay)
            yield self.sim.minutes(0.5, 5)
            if self.sim.chance(0.95):
                self.sim.fire(volume, "OperationSucceeded", **pay)  # -> Expunged
                return
            self.sim.fire(volume, "OperationFailed", **pay)  # back to Destroy
            yield self.sim.minutes(5, 30)

    def acquire_ip(self, account: str) -> Step[AnyMachine | None]:
        """A public IP from the pool (or a new one), Allocated; None if association failed."""
        sim, pay = self.sim, {"account": account}
        ip = self.free_ips.pop(0) if self.free_ips else self.new(IpAddress, "ip")
        if sim.chance(0.1):
            sim.fire(ip, "ReserveRequested", **pay)
            yield sim.minutes(1, 60)
        sim.fire(ip, "AllocateRequested", **pay)
        yield sim.minutes(0.1, 1)
        if sim.chance(0.03):
            sim.fire(ip, "OperationFailed", **pay)  # -> Releasing
            yield sim.minutes(0.1, 1)
            sim.fire(ip, "OperationSucceeded", **pay)  # -> Free
            self.free_ips.append(ip)
            return None
        sim.fire(ip, "OperationSucceeded", **pay)  # -> Allocated [usage]
        return ip

    def release_address(self, ip: AnyMachine, account: str) -> Step[None]:
        """Release a public IP back to the pool (a failed release is retried)."""
        sim, pay = self.sim, {"account": account}
        sim.fire(ip, "ReleaseRequested", **pay)  # Allocated -> Releasing [usage]
        yield sim.minutes(0.1, 2)
        while sim.chance(0.05):
            sim.fire(ip, "OperationFailed", **pay)  # a failed release stays Releasing
            yield sim.minutes(1, 10)
        sim.fire(ip, "OperationSucceeded", **pay)  # -> Free
        self.free_ips.append(ip)
