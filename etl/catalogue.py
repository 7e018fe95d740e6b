"""Sample Katapult VM package catalogues: pure data, no I/O."""

from __future__ import annotations

import gc
import random

# The one group every public package belongs to on the real API.
STANDARD_GROUP = {"id": "vmpkgrp_P5kCZvAtvXRC3sVl", "name": "Standard vCPU"}

# (name, id, cpu_cores, memory_in_gb, storage_in_gb), in the order the API lists them.
_PUBLIC = (
    ("ROCK-1", "vmpkg_Eh5LYVKScVHpj7sM", 1, 1, 10),
    ("ROCK-3", "vmpkg_OFEv0bjTQIQYXl6l", 1, 3, 30),
    ("ROCK-6", "vmpkg_CjzXI46o6UL836J3", 2, 6, 60),
    ("ROCK-12", "vmpkg_qdvUpK63EttoK5jk", 4, 12, 120),
    ("ROCK-18", "vmpkg_1IxLLDJiFoAHQ114", 6, 18, 180),
    ("ROCK-24", "vmpkg_CZTdq5rKwfVXnc8Y", 8, 24, 240),
    ("ROCK-36", "vmpkg_GtsX2L7dN8VJdV9I", 12, 36, 360),
    ("ROCK-48", "vmpkg_usRAAHOktjeMqCe2", 16, 48, 480),
    ("ROCK-72", "vmpkg_LI35QMIn2CSUpM9w", 24, 72, 720),
    ("ROCK-96", "vmpkg_zfvN5zzIL2p4Hs3G", 32, 96, 960),
    ("ROCK-144", "vmpkg_37OBI7xCwaVpohGq", 48, 144, 1440),
    ("ROCK-192", "vmpkg_gktzyVYOddg3GV3G", 64, 192, 1920),
    ("ROCK-288", "vmpkg_7B6KGXUyhF2LwzMb", 96, 288, 2400),
    ("BOULDER-20", "vmpkg_iMJ5evR2xpxOnlUa", 2, 20, 25),
    ("BOULDER-40", "vmpkg_RL8f0hlqstTm3Z2j", 4, 40, 50),
    ("BOULDER-80", "vmpkg_FP8udAYEAO7xcn52", 8, 80, 100),
    ("BOULDER-160", "vmpkg_YAxeIG2VtGBzYeWe", 16, 160, 200),
    ("BOULDER-320", "vmpkg_o7WQacnhi9vidvm7", 32, 320, 400),
    ("BOULDER-640", "vmpkg_Aykj1W3ln2NRELmh", 64, 640, 800),
    ("BOULDER-960", "vmpkg_qUeMlCJA4qzK5ETZ", 96, 960, 1200),
)


def _package(pkg_id, name, cpu, memory, storage, group, *, privacy="public",
             ipv4=1, bandwidth=None, icon=None, dedicated=False) -> dict:
    """Build one package dict with exactly the keys the API returns."""
    return {
        "id": pkg_id,
        "name": name,
        "permalink": name.lower(),
        "cpu_cores": cpu,
        "ipv4_addresses": ipv4,
        "memory_in_gb": memory,
        "storage_in_gb": storage,
        "monthly_bandwidth_allowance_in_gb": bandwidth,
        "privacy": privacy,
        "icon": icon,
        "use_dedicated_cpus": dedicated,
        "group": dict(group),
    }


def public_catalogue() -> list[dict]:
    """The 20 packages of the real Katapult public catalogue, as fresh dicts."""
    return [_package(i, n, c, m, s, STANDARD_GROUP) for n, i, c, m, s in _PUBLIC]


# --- synthetic catalogues -------------------------------------------------

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Two base62 digits per lookup: ids are built 100,000 at a time, so divmod count matters.
_PAIRS = [a + b for a in _B62 for b in _B62]
_SPACE10 = 62 ** 10
_SPACE6 = 62 ** 6
_P2, _P3, _P4 = 3844 ** 2, 3844 ** 3, 3844 ** 4
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


def _icon(index: int, token: str) -> dict:
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


def synthetic_catalogue(count: int, groups: int = 20, *, seed: int = 0,
                        privacy: str = "public") -> list[dict]:
    """`count` deterministic made-up packages spread round-robin over `groups` groups."""
    if count < 0 or groups < 1:
        raise ValueError("count must be >= 0 and groups >= 1")
    width = max(2, len(str(groups)))
    group_head = _head(seed, _GRP_SALT)
    group_list = [("vmpkgrp_" + group_head + _tail(g, _GRP_SALT), f"Group {g + 1:0{width}d}")
                  for g in range(groups)]
    # Nothing built here is cyclic, but 200k new containers would trigger repeated
    # full collections that cost more than building the catalogue itself.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(count, group_list, _head(seed, _PKG_SALT), random.Random(seed).random, privacy)
    finally:
        if gc_was_enabled:
            gc.enable()


def _build(count: int, group_list: list, head: str, rnd, privacy: str) -> list[dict]:
    """The hot loop of synthetic_catalogue: inlined id and dict building, locals only."""
    pairs, cpus, mems, stos, bws = _PAIRS, _CPUS, _MEMORY_PER_CPU, _STORAGE_PER_GB, _BANDWIDTHS
    p4, p3, p2, mix, space, salt = _P4, _P3, _P2, _MIX, _SPACE10, _PKG_SALT
    groups = len(group_list)
    packages = []
    append = packages.append
    for i in range(count):
        # Always draw the same number of values per package, so package i is the
        # same whatever `count` is.
        r_cpu, r_mem, r_sto, r_bw, r_icon, r_ded = rnd(), rnd(), rnd(), rnd(), rnd(), rnd()
        x = (i + salt) * mix % space  # same digits as _tail(i, salt), unrolled
        token = head + (pairs[x // p4] + pairs[x // p3 % 3844] + pairs[x // p2 % 3844]
                        + pairs[x // 3844 % 3844] + pairs[x % 3844])
        digits = f"{i + 1:05d}"
        cpu = cpus[int(r_cpu * 12)]
        memory = cpu * mems[int(r_mem * 5)]
        g_id, g_name = group_list[i % groups]
        append({
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
        })
    return packages
