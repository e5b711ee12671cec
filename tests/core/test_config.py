import subprocess
import sys

import pytest

from imgrec.core.errors import SettingsError
from imgrec.core.settings import PROJECT_ROOT, Settings


def test_environment_overrides_defaults(tmp_path):
    settings = Settings.from_env({
        "IMGREC_MODELS_DIR": str(tmp_path / "m"),
        "IMGREC_DATA_DIR": str(tmp_path / "d"),
        "IMGREC_MAX_UPLOAD_BYTES": "1000",
        "IMGREC_KEEP_UPLOADS": "yes",
        "IMGREC_UNCERTAIN_THRESHOLD": "0.25",
        "IMGREC_ADMIN_TOKEN": "s3cret",
    })
    assert settings.models_dir == tmp_path / "m"
    assert settings.max_upload_bytes == 1000 and settings.keep_uploads is True
    assert settings.uncertain_threshold == 0.25 and settings.admin_token == "s3cret"
    assert settings.database_url_resolved == f"sqlite:///{tmp_path / 'd' / 'imgrec.db'}"
    assert Settings.from_env({"IMGREC_DATABASE_URL": "postgresql+psycopg://x/y"}).database_url_resolved.startswith("postgresql")


@pytest.mark.parametrize("name, value, expected", [
    ("IMGREC_MAX_PIXELS", "lots", "IMGREC_MAX_PIXELS='lots' is not a valid int."),
    ("IMGREC_KEEP_UPLOADS", "maybe", "Expected one of: 1, 0, true, false, yes, no."),
])
def test_bad_values_name_the_variable(name, value, expected):
    with pytest.raises(SettingsError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env({name: value})


def test_importing_the_package_and_settings_loads_nothing_heavy():
    code = "import sys, imgrec.core.settings, imgrec.core.images, imgrec.cli.main; print(sorted(m for m in ('tensorflow', 'keras', 'streamlit', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]", out.stderr
