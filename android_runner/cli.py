"""`canao device ...` (start/stop/list emulated phones, set them up) and `canao deploy OUT/`."""
import sys


def register(sub) -> None:
    device = sub.add_parser("device", help="start, stop and list (emulated) phones for TVM RPC",
                            description="Manage devices reached over TVM RPC. The emulated device is an aarch64 "
                            "TVM RPC server under qemu-user (cortex-a76): the same protocol as TVM's Android RPC app. "
                            "Timings under qemu mean nothing; outputs must match.")
    dsub = device.add_subparsers(dest="device_command", metavar="ACTION")
    dsub.required = True

    p = dsub.add_parser("setup", help="download and unpack the emulated device (cached; instant when done)")
    p.add_argument("--force", action="store_true", help="redo every step")
    p.set_defaults(func=_setup)

    p = dsub.add_parser("start-emulated", help="start an emulated aarch64 phone running TVM's RPC server")
    p.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--tracker", metavar="HOST:PORT", help="register with this TVM RPC tracker")
    p.add_argument("--key", default="", help="device key for the tracker, e.g. android")
    p.add_argument("--stock", action="store_true", help="run the unmodified `python -m tvm.exec.rpc_server` "
                   "(slower start: it imports TVM twice under qemu)")
    p.set_defaults(func=_start)

    p = dsub.add_parser("stop", help="stop emulated devices started with start-emulated")
    p.add_argument("--port", type=int, help="only the device on this port (default: all)")
    p.set_defaults(func=_stop)

    p = dsub.add_parser("list", help="emulated devices running here, and a tracker's queue")
    p.add_argument("--tracker", metavar="HOST:PORT", help="also show this tracker's queue")
    p.set_defaults(func=_list)

    p = sub.add_parser("deploy", help="run a compiled artifact on a device over TVM RPC and check its output",
                       description="Upload OUT/lib.so and OUT/params.npz to a device, run the model on the "
                       "reference inputs in the artifact, fetch the output and compare it with the host "
                       "reference; --repeat also times it on the device.")
    p.add_argument("artifact", metavar="OUT", help="folder written by `canao compile ... --target android-arm64 -o OUT`")
    p.add_argument("--rpc", metavar="HOST:PORT", help="the device's RPC server (adb forward, emulated device, ...)")
    p.add_argument("--tracker", metavar="HOST:PORT", help="a TVM RPC tracker; a free device of --key is used")
    p.add_argument("--key", help="device key at the tracker, e.g. android")
    p.add_argument("--repeat", type=int, default=0, help="also time main() this many times on the device")
    p.add_argument("--atol", type=float, default=1e-3, help="output tolerance, scaled by max|reference| (default 1e-3)")
    p.add_argument("--retries", type=int, default=2, help="with --tracker: other devices to try after a drop")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one remote step may take (default 300)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON (atomically)")
    p.set_defaults(func=_deploy)


def _setup(args) -> int:
    from .provision import ensure_emulator

    emu = ensure_emulator(force=args.force)
    print(f"emulated aarch64 device ready in {emu.home}")
    return 0


def _start(args) -> int:
    from canao.errors import CanaoError

    from .emulator import EmulatedDevice, parse_address
    from .provision import ensure_emulator

    if args.key and not args.tracker:
        raise CanaoError("--key only matters with --tracker", "add --tracker HOST:PORT, or drop --key")
    tracker = parse_address(args.tracker, "--tracker") if args.tracker else None
    device = EmulatedDevice(port=args.port, host=args.host, tracker=tracker, key=args.key, stock=args.stock,
                            emulator=ensure_emulator())
    device.start(detach=True)
    where = f" registered with {args.tracker} as '{args.key}'" if tracker else ""
    print(f"emulated aarch64 device listening on {device.host}:{device.port}{where} "
          f"(pid {device.pid}, log {device.log_path}); stop it with: canao device stop --port {device.port}")
    return 0


def _stop(args) -> int:
    from .emulator import stop_registered

    stopped = stop_registered(args.port)
    for info in stopped:
        print(f"stopped emulated device {info['host']}:{info['port']} (pid {info['pid']})")
    if not stopped:
        print("no emulated device was running" + (f" on port {args.port}" if args.port else ""))
    return 0


def _list(args) -> int:
    from .emulator import registered_devices
    from .tracker import queue_table

    devices = registered_devices()
    print(f"{len(devices)} emulated device(s) started here")
    for info in devices:
        tracker = f", tracker {info['tracker']} key '{info['key']}'" if info.get("tracker") else ""
        print(f"  {info['host']}:{info['port']} pid {info['pid']} since {info['started']}{tracker}")
    if args.tracker:
        print(queue_table(args.tracker))
    return 0


def _deploy(args) -> int:
    from canao.atomic import write_json

    from .deploy import deploy

    def progress(msg: str) -> None:
        print(f"... {msg}", file=sys.stderr, flush=True)

    report = deploy(args.artifact, rpc=args.rpc, tracker=args.tracker, key=args.key, repeat=args.repeat,
                    atol=args.atol, retries=args.retries, call_timeout=args.timeout, progress=progress)
    report.pop("output", None)
    check = report.get("check")
    line = f"ran {args.artifact} on {report['device']}"
    if report["dropped"]:
        line += f" after {len(report['dropped'])} dropped device(s)"
    shape = report["output_shape"]
    if shape and isinstance(shape[0], list):  # several outputs
        print(line + f": {len(shape)} outputs " + ", ".join(str(tuple(s)) for s in shape))
    else:
        print(line + f": output {tuple(shape)}")
    if check:
        verdict = "matches" if check["match"] else "DOES NOT match"
        detail = check.get("why") or f"max |diff| {check['max_abs_err']:.3g}, tolerance {check['tolerance']:.3g}"
        count = f" on all {len(check['outputs'])} outputs" if check.get("outputs") and check["match"] else ""
        print(f"output {verdict} the host reference{count} ({detail})")
        record_device_check(args.artifact, report, args.atol)
    else:
        print("no reference in the artifact: output not checked")
    if report.get("stats"):
        s = report["stats"]
        print(f"device time over {s['runs']} runs: min {s['min_ms']:.2f} ms, median {s['p50_ms']:.2f} ms")
    if args.json:
        write_json(args.json, report)
    return 0 if (check is None or check["match"]) else 1


def record_device_check(folder, report: dict, atol: float) -> dict:
    """Write the on-device check into the artifact's manifest (atomically: temp file + rename).

    A build for another architecture is "unverified" until this runs; afterwards its check status
    is the device's verdict ("passed" / "failed") with the device, time and per-output errors under
    ``check["device"]``. A host build that already passed keeps "passed" unless the device disagrees.
    """
    import time

    from canao import artifact

    device_check = report["check"]
    manifest = artifact.read_manifest(folder)
    check = dict(manifest.get("check") or {})
    passed = bool(device_check["match"])
    check["device"] = {"status": "passed" if passed else "failed", "device": report["device"],
                       "key": report.get("key") or "", "atol": atol,
                       "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       **{k: v for k, v in device_check.items() if k != "match"}}
    check["status"] = "passed" if passed else "failed"
    check.pop("note", None)
    check["verified_by"] = "canao deploy"
    if isinstance(check.get("outputs"), dict):
        per = device_check.get("outputs") or {next(iter(check["outputs"]), "output"): device_check}
        for name, entry in check["outputs"].items():
            if name in per and isinstance(entry, dict):
                entry.update(status="passed" if per[name].get("match") else "failed",
                             **{k: v for k, v in per[name].items() if k in ("max_abs_err", "tolerance", "why")})
    return artifact.update_manifest(folder, check=check)


def main(argv=None) -> int:
    """Standalone entry (``python -m canao.android_runner.cli device list``), same handlers as ``canao``."""
    import argparse

    from canao.cli import dispatch

    parser = argparse.ArgumentParser(prog="python -m canao.android_runner.cli")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register(sub)
    return dispatch(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
