"""``madbench arch list|describe`` and ``madbench check``: JSON keys, exit codes, one-line
errors, on bundled presets and on small mixers registered or imported for the test."""
import json
import textwrap

import pytest
from click.testing import CliRunner

import madbench
from madbench.cli import main

from helpers import LinearRecurrence


class Recurrence(LinearRecurrence):
    """h_t = a h_{t-1} + B x_t, y_t = C h_t: n states (declared honestly, or not)."""

    def __init__(self, dim, state=6, declared=None):
        super().__init__(dim, state, declared)


class Reversed(Recurrence):
    """The same recurrence run from the end: anti-causal."""

    def forward(self, x):
        return super().forward(x.flip(1)).flip(1)


class CliPlugin:
    @madbench.hookimpl
    def madbench_register_mixers(self, register):
        register("cli-recurrence", Recurrence, shorthand="Cr")
        register("cli-under", Recurrence, defaults={"declared": 2})
        register("cli-reversed", Reversed)


@pytest.fixture
def runner(register_plugin):
    register_plugin(CliPlugin(), "cli-toys")
    return CliRunner()


def _json(result):
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def test_arch_list_json(runner):
    result = runner.invoke(main, ["arch", "list", "--json"])
    assert result.exit_code == 0
    data = _json(result)
    names = {a["name"]: a for a in data["architectures"]}
    assert names["striped-hyena-moe"]["mad_lab_id"] == "H-MoE-mA-MoE"
    mixers = {m["name"]: m for m in data["mixers"]}
    assert mixers["mamba"]["shorthand"] == "Mb" and mixers["swiglu"]["kind"] == "channel"
    assert "cli-recurrence" in mixers


def test_arch_list_table(runner):
    result = runner.invoke(main, ["arch", "list"])
    assert result.exit_code == 0 and "hyena-swiglu" in result.stdout


def test_arch_describe_json_keys(runner):
    result = runner.invoke(main, ["arch", "describe", "mh-hyena-swiglu", "--seq-len", "32",
                                  "--json"])
    assert result.exit_code == 0, result.stderr
    data = _json(result)
    for key in ("params", "active_params", "fixed_state", "dynamic_state", "cache",
                "flops_per_token", "layers", "iso_state", "param_ratio"):
        assert key in data
    assert data["fixed_state"] == 4096 and data["iso_state"]["ok"]
    assert data["param_ratio"]["reference"] == "mA-Sg-mA-Sg"
    assert {"mixer", "kind", "kwargs", "params", "fixed_state"} <= set(data["layers"][0])


def test_arch_describe_modifiers(runner):
    result = runner.invoke(main, ["arch", "describe", "Cr", "--channel", "moe", "--striped",
                                  "--mixer-kwargs", '{"state": 5}', "--seq-len", "8",
                                  "--json"])
    assert result.exit_code == 0, result.stderr
    data = _json(result)
    assert [l["mixer"] for l in data["layers"]] == ["Cr", "moe-mlp", "mh-attention", "moe-mlp"]
    assert data["layers"][0]["kwargs"] == {"state": 5}
    assert data["fixed_state"] == 5 and data["dynamic_state"] == 2 * 128 * 8
    assert data["iso_state"]["applies"] is False


def test_arch_describe_table(runner):
    result = runner.invoke(main, ["arch", "describe", "mamba", "--seq-len", "16"])
    assert result.exit_code == 0
    assert "iso-state: ok" in result.stdout and "param ratio" in result.stdout


def test_arch_describe_import_path(runner, tmp_path, monkeypatch):
    (tmp_path / "madbench_cli_tmp_mixer.py").write_text(textwrap.dedent("""
        from torch import nn

        class PositionWise(nn.Module):
            def __init__(self, dim):
                super().__init__()
                self.proj = nn.Linear(dim, dim, bias=False)
            def forward(self, x):
                return self.proj(x)
            def state_size(self, seq_len):
                return 0
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    result = runner.invoke(main, ["arch", "describe", "madbench_cli_tmp_mixer:PositionWise",
                                  "--seq-len", "8", "--json"])
    assert result.exit_code == 0, result.stderr
    data = _json(result)
    assert data["layers"][0]["params"] == 128 * 128
    assert data["fixed_state"] == 0 and not data["iso_state"]["ok"]


@pytest.mark.parametrize("args", [["arch", "describe", "no-such-arch"],
                                  ["check", "--arch", "no-such-arch"],
                                  ["arch", "describe", "nope:Missing"],
                                  ["arch", "describe", "Cr", "--mixer-kwargs", "{bad"]])
def test_unknown_names_exit_2_with_one_line(runner, args):
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1


def test_check_passes_an_honest_mixer(runner):
    result = runner.invoke(main, ["check", "--arch", "cli-recurrence", "--seq-len", "8",
                                  "--allow-state-mismatch", "--json"])
    assert result.exit_code == 0, result.stderr
    data = _json(result)
    assert data["eval"] == "flagged state-mismatch, param-mismatch" == \
        "flagged " + ", ".join(data["flags"])
    assert data["causal"] is True and data["state_ok"] is True
    assert data["declared_state"] == 2 * 6 and data["measured_state"] == 2 * 6
    assert len(data["layers"]) == 4 and data["layers"][1]["audit"] is None


def test_check_refuses_what_eval_refuses_with_eval_s_message(runner, tmp_path):
    """One verdict: the honest 12-state recurrence misses the 4,096 target, so eval refuses it
    before training (exit 3), and check says the same thing with the same exit code."""
    check = runner.invoke(main, ["check", "--arch", "cli-recurrence", "--seq-len", "8",
                                 "--json"])
    evaluation = runner.invoke(main, ["eval", "--arch", "cli-recurrence", "--tasks",
                                      "memorization", "--preset", "smoke", "--dry-run",
                                      "--run-dir", str(tmp_path)])
    assert check.exit_code == evaluation.exit_code == 3
    assert _json(check)["eval"] == "refused" and _json(check)["iso_state"]["ok"] is False
    assert check.stderr == evaluation.stderr and "4,096" in check.stderr
    describe = _json(runner.invoke(main, ["arch", "describe", "cli-recurrence", "--json"]))
    assert describe["iso_state"] == _json(check)["iso_state"]
    assert describe["param_ratio"] == _json(check)["param_ratio"]


def test_check_refuses_an_anti_causal_mixer(runner):
    result = runner.invoke(main, ["check", "--arch", "cli-reversed", "--seq-len", "8",
                                  "--json"])
    assert result.exit_code == 3
    data = _json(result)
    assert data["causal"] is False
    assert data["layers"][0]["causality"]["first_leak"] == 0
    assert "layer 0 (cli-reversed" in result.stderr and "position 0" in result.stderr
    assert result.stderr.count("\n") == 1


def test_check_refuses_an_under_declared_mixer(runner):
    result = runner.invoke(main, ["check", "--arch", "cli-under", "--seq-len", "8", "--json"])
    assert result.exit_code == 3
    data = _json(result)
    assert data["causal"] is True and data["state_ok"] is False
    assert data["layers"][0]["audit"]["measured_state"] > data["layers"][0]["audit"][
        "declared_total"]
    assert "under-declares" in result.stderr


def test_check_a_bundled_preset_at_a_small_audit_width(runner):
    result = runner.invoke(main, ["check", "--arch", "mamba-swiglu", "--seq-len", "8",
                                  "--audit-dim", "8"])
    assert result.exit_code == 0, result.stderr
    assert "all checks passed" in result.stdout
