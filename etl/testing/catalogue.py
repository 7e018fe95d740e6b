"""Sample Katapult VM package catalogues: pure data, no I/O."""

from __future__ import annotations

import gc
import random
from collections.abc import Callable
from typing import Any

# Katapult's public catalogue as its own API answered it, recorded by the public test suites of Katapult's
# Terraform provider and Go client: the 20 packages, in the order the API lists them, from the newest
# whole list recorded (GET /core/v1/virtual_machine_packages, 23 March 2023). Those answers carry id,
# name, permalink, cores, memory, storage, one IPv4 address, privacy "public" and no icon.
RECORDED_AS_OF = "2023-03-23"
# (id, name, cpu_cores, memory_in_gb, storage_in_gb); the permalink is the name in lower case.
_PUBLIC = (
    ("vmpkg_dhG25G5SX3HrA5j5", "ROCK-1", 1, 1, 10),
    ("vmpkg_Eh5LYVKScVHpj7sM", "ROCK-3", 1, 3, 25),
    ("vmpkg_dMeEyd1g8hwIlxR8", "ROCK-6", 2, 6, 50),
    ("vmpkg_vYQHiDoHeSvsFCFI", "ROCK-12", 4, 12, 100),
    ("vmpkg_WHJ4euoDO9S5Ncrc", "ROCK-18", 6, 18, 150),
    ("vmpkg_Xr1hcf7e1oZYZMkK", "BOULDER-20", 2, 20, 25),
    ("vmpkg_tBK6cizGTf9GhZpg", "ROCK-24", 8, 24, 200),
    ("vmpkg_VnOqg6SyU8vqLf8m", "ROCK-36", 12, 36, 300),
    ("vmpkg_X3nS8we8RuNFi2ke", "BOULDER-40", 4, 40, 50),
    ("vmpkg_7k6bXXWeEXIc17Yt", "ROCK-48", 16, 48, 400),
    ("vmpkg_7EjHNfEELrD0z26e", "ROCK-72", 24, 72, 600),
    ("vmpkg_Vv3avl0BcXsHoq6t", "BOULDER-80", 8, 80, 100),
    ("vmpkg_O2mMiznAzunoUd91", "ROCK-96", 32, 96, 800),
    ("vmpkg_uxUwCBITlkLhmSqo", "ROCK-144", 48, 144, 1200),
    ("vmpkg_N9v00VtGzaJShhhN", "BOULDER-160", 16, 160, 200),
    ("vmpkg_2dO1OYPl4pcNEKEE", "ROCK-192", 64, 192, 1600),
    ("vmpkg_ubLZ0i8iCwYo7pPr", "ROCK-288", 96, 288, 2400),
    ("vmpkg_25zXSyE1xJgRHKwK", "BOULDER-320", 32, 320, 400),
    ("vmpkg_CaSziLoMYOKS1Pxi", "BOULDER-640", 64, 640, 800),
    ("vmpkg_GDVwfn0oSCGPbqsE", "BOULDER-960", 96, 960, 1200),
)
# What newer answers (2023-2026) recorded of some of them; every other package's bandwidth, dedicated
# CPUs and group were never recorded, and stay null rather than guessed.
STANDARD_GROUP = {"id": "vmpkgrp_P5kCZvAtvXRC3sVl", "name": "Standard vCPU"}
_BANDWIDTH_IN_GB = {"ROCK-1": 1024, "ROCK-3": 2048, "ROCK-6": 3072}
_IN_STANDARD_GROUP = ("ROCK-1", "ROCK-3")  # recorded with use_dedicated_cpus false and this group


def _public_package(package_id: str, name: str, cpu: int, memory: int, storage: int) -> dict[str, Any]:
    """One package with every key the API sends today; what was never recorded is null."""
    grouped = name in _IN_STANDARD_GROUP
    return {
        "id": package_id,
        "name": name,
        "permalink": name.lower(),
        "cpu_cores": cpu,
        "ipv4_addresses": 1,
        "memory_in_gb": memory,
        "storage_in_gb": storage,
        "monthly_bandwidth_allowance_in_gb": _BANDWIDTH_IN_GB.get(name),
        "privacy": "public",
        "icon": None,
        "use_dedicated_cpus": False if grouped else None,
        "group": dict(STANDARD_GROUP) if grouped else None,
    }


def public_catalogue() -> list[dict[str, Any]]:
    """The 20 packages of Katapult's public catalogue as recorded (RECORDED_AS_OF), as fresh dicts."""
    return [_public_package(*package) for package in _PUBLIC]


# --- synthetic catalogues -------------------------------------------------

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Two base62 digits per lookup: ids are built 100,000 at a time, so divmod count matters.
_PAIRS = [a + b for a in _B62 for b in _B62]
_SPACE10 = 62**10
_SPACE6 = 62**6
_P2, _P3, _P4 = 3844**2, 3844**3, 3844**4
# Multipliers are odd and not multiples of 31, so i -> i * M mod 62**k is a bijection:
# distinct counters always give distinct ids. Near 0.618 * 62**k, so neighbouring
# ids differ in every digit and look unrelated.
_MIX = 518715534800990977
_MIX6 = 35104476157
_PKG_SALT, _GRP_SALT = 0x5BD1E995, 0x27D4EB2F
_DIGEST_MIX = 0x9E3779B97F4A7C15F39CC0605CEDC835  # odd: distinct fake digests

_CPUS = (1, 2, 2, 4, 4, 8, 8, 16, 24, 32, 48, 64)
_MEMORY_PER_CPU = (1, 2, 3, 4, 8)
_STORAGE_PER_GB = (5, 10, 10, 20, 40)
_BANDWIDTHS = (500, 1000, 2000, 5000, 10000)


def _b62(n: int, width: int) -> str:
    """Fixed-width base62 (width must be even)."""
    out = []
    for _ in range(width // 2):
        n, r = divmod(n, 3844)
        out.append(_PAIRS[r])
    return "".join(reversed(out))


def _head(seed: int, salt: int) -> str:
    """Six base62 chars shared by every id of one (seed, salt) catalogue."""
    return _b62(((seed + salt) * _MIX6) % _SPACE6, 6)


def _tail(counter: int, salt: int) -> str:
    """Ten base62 chars, distinct for distinct counters (below 62**10)."""
    return _b62(((counter + salt) * _MIX) % _SPACE10, 10)


def _icon(index: int, token: str) -> dict[str, Any]:
    """An uploaded-icon attachment shaped like the API's."""
    file_name = f"pkg-{index:05d}.png"
    return {
        "url": f"https://my.katapult.io/attachment/{token}/{file_name}",
        "file_name": file_name,
        "file_type": "image/png",
        "file_size": 2048 + (index * 7919) % 30000,
        "digest": f"{(index * _DIGEST_MIX) % (1 << 128):032x}",
        "token": token,
    }


def synthetic_catalogue(
    count: int, groups: int = 20, *, seed: int = 0, privacy: str = "public"
) -> list[dict[str, Any]]:
    """`count` deterministic made-up packages spread round-robin over `groups` groups."""
    if count < 0 or groups < 1:
        raise ValueError("count must be >= 0 and groups >= 1")
    width = max(2, len(str(groups)))
    group_head = _head(seed, _GRP_SALT)
    group_list = [("vmpkgrp_" + group_head + _tail(g, _GRP_SALT), f"Group {g + 1:0{width}d}") for g in range(groups)]
    # Nothing built here is cyclic, but 200k new containers would trigger repeated
    # full collections that cost more than building the catalogue itself.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(count, group_list, _head(seed, _PKG_SALT), random.Random(seed).random, privacy)
    finally:
        if gc_was_enabled:
            gc.enable()


def _build(
    count: int, group_list: list[tuple[str, str]], head: str, rnd: Callable[[], float], privacy: str
) -> list[dict[str, Any]]:
    """The hot loop of synthetic_catalogue: inlined id and dict building, locals only."""
    pairs, cpus, mems, stos, bws = _PAIRS, _CPUS, _MEMORY_PER_CPU, _STORAGE_PER_GB, _BANDWIDTHS
    p4, p3, p2, mix, space, salt = _P4, _P3, _P2, _MIX, _SPACE10, _PKG_SALT
    groups = len(group_list)
    packages: list[dict[str, Any]] = []
    append = packages.append
    for i in range(count):
        # Always draw the same number of values per package, so package i is the
        # same whatever `count` is.
        r_cpu, r_mem, r_sto, r_bw, r_icon, r_ded = rnd(), rnd(), rnd(), rnd(), rnd(), rnd()
        x = (i + salt) * mix % space  # same digits as _tail(i, salt), unrolled
        token = head + (
            pairs[x // p4] + pairs[x // p3 % 3844] + pairs[x // p2 % 3844] + pairs[x // 3844 % 3844] + pairs[x % 3844]
        )
        digits = f"{i + 1:05d}"
        cpu = cpus[int(r_cpu * 12)]
        memory = cpu * mems[int(r_mem * 5)]
        g_id, g_name = group_list[i % groups]
        append(
            {
                "id": "vmpkg_" + token,
                "name": "PKG-" + digits,
                "permalink": "pkg-" + digits,
                "cpu_cores": cpu,
                "ipv4_addresses": 2 if r_ded > 0.95 else 1,
                "memory_in_gb": memory,
                "storage_in_gb": memory * stos[int(r_sto * 5)],
                "monthly_bandwidth_allowance_in_gb": bws[int(r_bw * 10)] if r_bw < 0.5 else None,
                "privacy": privacy,
                "icon": _icon(i + 1, token[::-1]) if r_icon < 0.1 else None,
                "use_dedicated_cpus": r_ded < 0.25,
                "group": {"id": g_id, "name": g_name},
            }
        )
    return packages
