"""Runs ON the emulated device (aarch64 python under qemu): TVM's RPC server, announced on stdout.

Why not plain ``python -m tvm.exec.rpc_server``: that entry point starts the server in a second
python (a PopenWorker that re-executes ``sys.executable``), so every start pays ``import tvm``
under qemu twice (6-12 s each). This script builds the same server object
(``tvm.rpc.server.PopenRPCServerState``, what the PopenWorker runs) in this process, and still
points ``sys.executable`` at the qemu wrapper so TVM's own ``--no-fork``/spawn paths work.
``--stock`` runs the unmodified ``tvm.exec.rpc_server`` instead.

One change to TVM's server: a session whose process exits with an error (a client that dropped,
or was cut off by the host's watchdog mid-call) no longer ends the server. TVM's ``_serving``
raises RuntimeError for a non-zero exit code, outside the listen loop's ``try``, which kills the
listen thread: the device went offline after its first dropped client (seen in CI: "Connect to
127.0.0.1:PORT failed" after a frozen-device test thawed it). A phone's server keeps serving.

It must not import canao: the device has only TVM and its dependencies.
"""
import argparse
import logging
import os
import sys

READY = "CANAO_DEVICE_READY"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--port-end", type=int, required=True)
    parser.add_argument("--tracker", default=None, help="HOST:PORT")
    parser.add_argument("--key", default="")
    parser.add_argument("--custom-addr", default=None)
    parser.add_argument("--stock", action="store_true")
    args = parser.parse_args()

    wrapper = os.environ.get("CANAO_DEVICE_PYTHON")
    if wrapper:
        sys.executable = wrapper  # the aarch64 binary itself cannot be exec'd without binfmt_misc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.stock:
        import runpy

        sys.argv = ["tvm.exec.rpc_server", "--host", args.host, "--port", str(args.port),
                    "--port-end", str(args.port_end)]
        if args.tracker:
            sys.argv += ["--tracker", args.tracker, "--key", args.key]
        if args.custom_addr:
            sys.argv += ["--custom-addr", args.custom_addr]
        # readiness is TVM's own "bind to HOST:PORT" log line (the host waits for it)
        runpy.run_module("tvm.exec.rpc_server", run_name="__main__")
        return

    from tvm.rpc import server

    _keep_serving_after_failed_sessions(server)
    tracker = None
    if args.tracker:
        host, port = args.tracker.rsplit(":", 1)
        tracker = (host, int(port))
    state = server.PopenRPCServerState(args.host, args.port, args.port_end, tracker_addr=tracker, key=args.key,
                                custom_addr=args.custom_addr)
    print(f"{READY} {state.port}", flush=True)
    state.thread.join()


def _keep_serving_after_failed_sessions(server) -> None:
    """Wrap ``server._serving`` (looked up at call time by the listen loop) so that a failed
    session is logged and the loop goes on accepting the next client from the folder it started in."""
    serving = server._serving

    def serving_that_survives(sock, addr, opts, load_library):
        home = os.getcwd()
        try:
            serving(sock, addr, opts, load_library)
        except Exception as exc:  # the session process exited with an error; the server lives on
            logging.warning("session from %s ended with an error: %s", addr, exc)
            os.chdir(home)  # TVM chdirs into the session's temp folder, which is deleted next
            try:
                sock.close()
            except OSError:
                pass

    server._serving = serving_that_survives


if __name__ == "__main__":
    main()
