"""The phone path: deploy, run and time compiled models on arm64 devices over TVM RPC.

- ``provision``: set up the emulated aarch64 device (qemu-user + aarch64 CPython + TVM), cached.
- ``emulator.EmulatedDevice``: a TVM RPC server under ``qemu-aarch64-static -cpu cortex-a76``.
- ``session.connect``: an RPC session (direct or through a tracker) with a client-side watchdog.
- ``remote.run_remote`` / ``time_remote`` / ``RemoteModel``: ELF-checked upload, run, time.
- ``deploy.deploy``: ``canao deploy OUT/``; ``farm.fan_out``: jobs over every device of a key.
- ``tuning.metaschedule_runner`` / ``cross_builder``: MetaSchedule against a device farm.
- ``cli.register``: the ``canao device ...`` and ``canao deploy`` subcommands.
"""
from .deploy import deploy
from .emulator import EmulatedDevice
from .farm import MeasureJob, MeasureResult, fan_out
from .provision import ensure_emulator
from .remote import RemoteModel, run_remote, time_remote
from .session import DeviceError, DeviceSession, connect
from .tracker import LocalTracker
from .tuning import cross_builder, metaschedule_runner

__all__ = ["deploy", "EmulatedDevice", "MeasureJob", "MeasureResult", "fan_out", "ensure_emulator", "RemoteModel",
           "run_remote", "time_remote", "DeviceError", "DeviceSession", "connect", "LocalTracker",
           "cross_builder", "metaschedule_runner"]
