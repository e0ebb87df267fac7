"""Per-request cost of device authentication: DPoP proofs and device challenge signatures.

``measure()`` returns the median microseconds per call of:

- ``verify_dpop_es256`` / ``verify_dpop_eddsa``: ``anfu.crypto.verify_dpop`` on a proof with
  an access token hash and a bound key, the parsed key already cached (a bound device);
- ``device_sig_es256`` / ``device_sig_eddsa``: ``DevicePublicKey.verify_device_challenge``,
  essentially the bare signature verification, the floor under the DPoP figure;
- ``ceiling``: one ``hashlib.sha256`` of 200 bytes plus ``orjson.loads`` of a small dict,
  the least any authenticated request costs, for reporting ratios.

Medians of single timed calls, interleaved across the operations, so a stray pause (GC, the
scheduler, another process) neither moves a figure nor favours one operation.

Run: ``python bench/auth_crypto.py [--iterations N]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import statistics
import time
from collections.abc import Callable

import orjson

from anfu.crypto import DeviceKey, verify_dpop

_BLOCK = 25
URL = "https://api.anfu.example/v1/trades/tr_0123456789/pay"
ACCESS_TOKEN = "v1." + "a" * 120 + "." + "b" * 43
CHALLENGE = dict(challenge="Zm9vYmFyYmF6cXV4", user_id="u_123", device_id="d_456",
                 purpose="step-up")


def _median_us(calls: dict[str, Callable[[], object]], iterations: int) -> dict[str, float]:
    """Median µs per call of each operation, timed one call at a time, interleaved in blocks.

    Interleaving gives every operation the same share of whatever else the machine is doing
    (a shared 2-core box rarely is idle), so their ratios stay meaningful; blocks of calls
    keep each operation's own code and data warm, as they are on a busy server.
    """
    for call in calls.values():  # warm caches and branch predictors
        for _ in range(min(iterations, 200)):
            call()
    samples: dict[str, list[int]] = {name: [] for name in calls}
    order = list(calls.items())
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(-(-iterations // _BLOCK)):
            for name, call in order:
                times = samples[name]
                for _ in range(_BLOCK):
                    start = clock()
                    call()
                    times.append(clock() - start)
            order.append(order.pop(0))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(times) / 1000 for name, times in samples.items()}


def _dpop_call(alg: str) -> Callable[[], object]:
    key = DeviceKey.generate(alg)  # type: ignore[arg-type]
    now = time.time()
    proof = key.dpop_proof("POST", URL, access_token=ACCESS_TOKEN, now=now)
    jkt = key.public.jkt
    # The proof itself must pass before it is worth timing.
    verify_dpop(proof, method="POST", url=URL, now=now, access_token=ACCESS_TOKEN,
                expected_jkt=jkt)
    return lambda: verify_dpop(proof, method="POST", url=URL, now=now,
                               access_token=ACCESS_TOKEN, expected_jkt=jkt)


def _device_sig_call(alg: str) -> Callable[[], object]:
    key = DeviceKey.generate(alg)  # type: ignore[arg-type]
    signature = key.sign_device_challenge(**CHALLENGE)
    public = key.public
    public.verify_device_challenge(signature, **CHALLENGE)
    return lambda: public.verify_device_challenge(signature, **CHALLENGE)


def _ceiling_call() -> Callable[[], object]:
    data = bytes(range(200))
    small = orjson.dumps({"jti": "x" * 22, "htm": "POST", "htu": URL, "iat": 1_700_000_000})
    return lambda: (hashlib.sha256(data).digest(), orjson.loads(small))


def measure(iterations: int = 2000) -> dict[str, float]:
    """Median microseconds per call, by operation name (see the module docstring)."""
    return _median_us(
        {
            "verify_dpop_es256": _dpop_call("ES256"),
            "verify_dpop_eddsa": _dpop_call("EdDSA"),
            "device_sig_es256": _device_sig_call("ES256"),
            "device_sig_eddsa": _device_sig_call("EdDSA"),
            "ceiling": _ceiling_call(),
        },
        iterations,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    results = measure(args.iterations)
    ceiling = results["ceiling"]
    print(f"{'operation':<22}{'median µs':>12}{'x ceiling':>12}")
    for name, micros in results.items():
        print(f"{name:<22}{micros:>12.1f}{micros / ceiling:>12.1f}")


if __name__ == "__main__":
    main()
