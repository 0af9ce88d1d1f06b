"""The OpenSSH server the `--via ssh` tests use (tests/system/sshd.py): a
login by the throwaway key reaches this machine's tide, and a refused key
is refused (the server checks keys, so a passing test means something)."""

import subprocess

from conftest import TIDE


def test_tide_runs_over_ssh(sshd):
    res = sshd.ssh(TIDE, "--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("tide "), res.stdout


def test_an_unknown_key_is_refused(sshd, tmp_path):
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "ssh_config"  # the same, with another key (IdentityFile lines add up)
    config.write_text("\n".join(f"  IdentityFile {key}" if l.strip().startswith("IdentityFile") else l
                                for l in sshd.config.read_text().splitlines()) + "\n")
    res = subprocess.run(["ssh", "-F", str(config), sshd.host, "true"],
                         capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert res.returncode == 255 and "Permission denied" in res.stderr, res.stderr
