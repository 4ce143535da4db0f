"""Bad input gets a one-line cause and fix, not a bare traceback."""

from __future__ import annotations

import subprocess

import pytest
from processes import bin_

from nerfconvert import NerfconvertError
from nerfconvert.views import load_run


def run(cmd, cwd=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_ns_train_plenoxels_missing_data_dir(tmp_path):
    missing = tmp_path / "no-such-scene"
    result = run([bin_("ns-train"), "plenoxels", "--output-dir", str(tmp_path / "out"), "--vis", "tensorboard",
                  "blender-data", "--data", str(missing)], cwd=tmp_path)
    assert result.returncode != 0
    assert f"--data {missing} does not exist" in result.stderr
    assert "nerfconvert scene" in result.stderr  # the fix
    assert "Traceback" not in result.stderr


def test_ns_train_plenoxels_data_dir_that_is_not_a_scene(tmp_path):
    """ns-train's own parsing and main, in-process (the installed command: the test above)."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.scripts import train

    config = tyro.cli(AnnotatedBaseConfigUnion, args=["plenoxels", "--output-dir", str(tmp_path / "out"), "--vis",
                                                      "tensorboard", "blender-data", "--data", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:  # a message, not an exception with a traceback
        train.main(config)
    message = str(exit_info.value)
    assert message.startswith("error: ") and "\n" not in message
    assert "has no transforms_train.json" in message


def test_load_run_missing_config(tmp_path):
    with pytest.raises(NerfconvertError, match="does not exist. Pass the config.yml"):
        load_run(tmp_path / "config.yml")


def test_load_run_not_a_run(tmp_path):
    bogus = tmp_path / "config.yml"
    bogus.write_text("learning_rate: 0.1\nname: not a run\n")
    with pytest.raises(NerfconvertError, match="is not a nerfstudio run config"):
        load_run(bogus)
    bogus.write_text("{{{ not yaml")
    with pytest.raises(NerfconvertError, match="is not a nerfstudio run config"):
        load_run(bogus)


def test_load_run_unsupported_model_names_supported_ones(trained_run, tmp_path):
    text = trained_run("tensorf").read_text()
    target = "!!python/name:nerfstudio.models.tensorf.TensoRFModel "  # the model's _target, not its config
    assert target in text
    foreign = tmp_path / "config.yml"
    foreign.write_text(text.replace(target, "!!python/name:nerfstudio.models.mipnerf.MipNerfModel "))
    with pytest.raises(NerfconvertError) as err:
        load_run(foreign)
    message = str(err.value)
    assert "MipNerfModel" in message
    for supported in ("NerfactoModel", "TensoRFModel", "NeRFModel", "PlenoxelsModel"):
        assert supported in message


def test_load_run_without_checkpoint(trained_run, tmp_path):
    import yaml

    config = yaml.load(trained_run("tensorf").read_text(), Loader=yaml.Loader)
    config.output_dir = tmp_path / "elsewhere"  # a run whose checkpoints are not there
    (tmp_path / "config.yml").write_text(yaml.dump(config))
    with pytest.raises(NerfconvertError, match="No checkpoint in"):
        load_run(tmp_path / "config.yml")


def test_cli_prints_one_line(tmp_path, capsys):
    """nerfconvert's main, in-process (the installed command: tests/test_convert.py)."""
    from nerfconvert.cli import main

    bogus = tmp_path / "config.yml"
    bogus.write_text("a: 1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["describe", "--load-config", str(bogus)])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "is not a nerfstudio run config" in errors[0]

