"""A2: the target check every notification URL passes when a channel is saved and before each send."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from orchestration.alerts.channels import check_target_url, masked_url

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.0.10/hook", "private"),
    ("http://172.16.5.4/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://100.64.0.1/hook", "non-public"),
])
def test_private_targets_are_refused_unless_the_operator_allows_them(settings, url, reason):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(InvalidInput) as refused:
        check_target_url(url)
    assert refused.value.code == "target_not_allowed"
    assert f"a {reason} address" in refused.value.message
    assert "FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS" in refused.value.message
    assert refused.value.details == {"config": {"url": [refused.value.message]}}

    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True
    assert check_target_url(url).addresses


@pytest.mark.parametrize("url, code", [
    ("ftp://example.com/x", "invalid_url"),
    ("file:///etc/passwd", "invalid_url"),
    ("https://user:pass@8.8.8.8/hook", "invalid_url"),
    ("https:///nohost", "invalid_url"),
    ("https://8.8.8.8:99999/", "invalid_url"),
    ("", "invalid_url"),
    (None, "invalid_url"),
    ("https://no-such-host.invalid/hook", "target_unresolvable"),
])
def test_malformed_or_unresolvable_urls_are_refused(settings, url, code):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = True  # these fail whatever the setting
    with pytest.raises(InvalidInput) as refused:
        check_target_url(url)
    assert refused.value.code == code


def test_a_public_address_passes(settings):
    settings.FLOWDECK_ALERTS_ALLOW_PRIVATE_TARGETS = False
    target = check_target_url("https://8.8.8.8/services/T0/B0/secret")
    assert (target.scheme, target.host, target.port, target.addresses) == ("https", "8.8.8.8", 443, ("8.8.8.8",))


def test_masked_urls_hide_the_path_and_query():
    assert masked_url("https://hooks.slack.com/services/T0/B0/secret") == "https://hooks.slack.com/…/****"
    assert masked_url("https://example.com/?token=x") == "https://example.com/…/****"
    assert masked_url("https://example.com:8443/") == "https://example.com:8443/"
