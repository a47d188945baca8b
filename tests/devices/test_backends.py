"""TorchBackend's identities for NVML, from torch's device properties."""

from __future__ import annotations

from types import SimpleNamespace

from fluxbot.devices.backends import _nvml_uuid, _pci_bus_id


class TestNvmlIdentity:
    """torch's view of a card turned into the ids NVML looks it up by (as seen on an H200)."""

    def test_torch_uuid_gets_nvmls_prefix(self) -> None:
        bare = "69812685-5467-5349-b3ae-166984a8b3db"

        assert _nvml_uuid(bare) == f"GPU-{bare}"
        assert _nvml_uuid(f"GPU-{bare}") == f"GPU-{bare}"
        assert _nvml_uuid(None) is None

    def test_pci_bus_id_in_nvmls_form(self) -> None:
        props = SimpleNamespace(pci_domain_id=0, pci_bus_id=6, pci_device_id=0)

        assert _pci_bus_id(props) == "00000000:06:00.0"
        assert _pci_bus_id(SimpleNamespace()) is None
