"""Every LSL packet of these tests stays on this machine.

liblsl reads its configuration once, when first used, from the file ``LSLAPICFG`` names: the
serve tests point it at popdecode's loopback configuration (IPv6 off, ``ResolveScope =
machine``, ``KnownPeers = {127.0.0.1}``, multicast listening on 127.0.0.1) before anything
loads pylsl, and pass the same variable to the commands they start.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from popdecode.serve.lsl import LOOPBACK_CONFIG

_cfg = Path(tempfile.mkdtemp(prefix="popdecode-lsl-")) / "lsl_api.cfg"
_cfg.write_text(LOOPBACK_CONFIG)
os.environ["LSLAPICFG"] = str(_cfg)
