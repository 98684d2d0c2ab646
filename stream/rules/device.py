"""Device, OS and browser from a user agent (ua-parser with its maintained regexes).

Parsing is cached per distinct user agent by ua-parser itself; it runs only for
conversions, never per click. Country comes from the sender's `country_code`: no
maintained GeoIP database ships on PyPI (geoip2fast's data stopped in 2024, MaxMind
needs a licence download), so IP-to-country is left to the sender and said so.
"""

from __future__ import annotations

from ua_parser import parse


def warm_up() -> None:
    """Compile ua-parser's regexes now (it does so on first use: a second or two of one core).

    Called when a stream worker starts, so its first conversion does not wait on it.
    """
    describe("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36")


def describe(user_agent: str | None) -> dict[str, str | None]:
    if not user_agent:
        return {"device_family": None, "os_family": None, "os_version": None, "browser_family": None}
    result = parse(user_agent)
    os_version = None
    if result.os and result.os.major:
        os_version = ".".join(p for p in (result.os.major, result.os.minor) if p)
    return {
        "device_family": result.device.family if result.device else None,
        "os_family": result.os.family if result.os else None,
        "os_version": os_version,
        "browser_family": result.user_agent.family if result.user_agent else None,
    }
