"""An OpenSSH server of the tests' own, for `tide run --via ssh:HOST`: sshd
on a free loopback port, a throwaway host key and user key under a temp
dir, logins by that key only. `ssh -F sshd.config HOST` (HOST = sshd.host)
reaches it with no question asked and nothing read from ~/.ssh."""

import os
import subprocess
import time
from pathlib import Path

from servers import port_open, stop_process
from free_port import free_port

SSHD = "/usr/sbin/sshd"
HOST = "tide-test-host"


class Sshd:
    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self.proc = None
        self.port = None
        self.host = HOST
        self.config = self.tmp / "ssh_config"   # the client's: ssh -F this HOST

    def _keygen(self, path):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def _write_configs(self):
        t = self.tmp
        (t / "sshd_config").write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {t}/host_key
PidFile {t}/sshd.pid
AuthorizedKeysFile {t}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PrintMotd no
Subsystem sftp internal-sftp
""")
        self.config.write_text(f"""Host {HOST}
  HostName 127.0.0.1
  Port {self.port}
  User {os.environ.get("USER") or "root"}
  IdentityFile {t}/user_key
  IdentitiesOnly yes
  UserKnownHostsFile {t}/known_hosts
  StrictHostKeyChecking accept-new
  BatchMode yes
  ConnectTimeout 10
""")

    def start(self):
        self._keygen(self.tmp / "host_key")
        self._keygen(self.tmp / "user_key")
        (self.tmp / "authorized_keys").write_text((self.tmp / "user_key.pub").read_text())
        # sshd insists on its privilege-separation directory
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        log = self.tmp / "sshd.log"
        for _attempt in range(3):
            self.port = free_port()
            self._write_configs()
            with open(log, "w") as err:
                self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.tmp / "sshd_config")],
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if port_open(self.port):
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"could not start sshd: {log.read_text(errors='replace')}")

    def ssh(self, *command, timeout=30):
        """Runs command on the server through the OpenSSH client."""
        return subprocess.run(["ssh", "-F", str(self.config), HOST, *command], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def stop(self):
        stop_process(self.proc, wait=5)
