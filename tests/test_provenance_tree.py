"""Runs trained from uncommitted changes say what the changes were (issue: store integrity, part 6): a
dirty tree's diff and its untracked kdlib/ files in the provenance, an untracked new module flagged as
dirty, and the rule for what counts as training code."""
import subprocess

import pytest

import kdlib.provenance as prov


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "kdlib" / "book").mkdir(parents=True)
    (tmp_path / "kdlib" / "train.py").write_text("LR = 0.1\n")
    (tmp_path / "kdlib" / "book" / "page.py").write_text("TITLE = 'a'\n")
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    monkeypatch.setattr(prov, "REPO_ROOT", tmp_path)
    prov.code_version.cache_clear(), prov.tree_changes.cache_clear()
    yield tmp_path
    prov.code_version.cache_clear(), prov.tree_changes.cache_clear()


def test_a_clean_tree_records_no_changes(repo):
    assert not prov.code_version().endswith("-dirty") and prov.tree_changes() == {}
    assert "tree_changes" not in prov.provenance("cpu", 1.0)


def test_a_changed_file_is_recorded_with_its_diff(repo):
    (repo / "kdlib" / "train.py").write_text("LR = 0.2\n")
    assert prov.code_version().endswith("-dirty")
    changes = prov.provenance("cpu", 1.0)["tree_changes"]
    assert changes["changed_files"] == ["kdlib/train.py"] and "+LR = 0.2" in changes["diff"]
    assert len(changes["diff_sha256"]) == 64 and not changes["diff_truncated"]
    assert prov.touches_training_code(changes) == ["kdlib/train.py"]


def test_a_run_store_in_the_tree_is_not_code(repo):
    """Training into results/ (tracked) rewrites files there: the code version stays clean."""
    import subprocess

    (repo / "results").mkdir()
    (repo / "results" / "metrics.json").write_text("{}")
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "store"], cwd=repo, check=True)
    prov.code_version.cache_clear()
    (repo / "results" / "metrics.json").write_text('{"accuracy": 1}')
    assert not prov.code_version().endswith("-dirty") and prov.tree_changes() == {}
    (repo / "kdlib" / "train.py").write_text("LR = 0.3\n")
    prov.code_version.cache_clear(), prov.tree_changes.cache_clear()
    assert prov.tree_changes()["changed_files"] == ["kdlib/train.py"]  # results/ left out of the diff


def test_an_untracked_module_makes_the_version_dirty_and_is_listed(repo):
    (repo / "kdlib" / "new_loss.py").write_text("X = 1\n")
    assert prov.code_version().endswith("-dirty")
    assert prov.tree_changes()["untracked_files"] == ["kdlib/new_loss.py"]


def test_the_book_wing_is_not_training_code():
    assert prov.touches_training_code({"changed_files": ["kdlib/book/claims.py", "README.md"]}) == []
    assert prov.touches_training_code({"changed_files": ["kdlib/arms.py"], "untracked_files": ["kdlib/x.py"]}) == \
        ["kdlib/arms.py", "kdlib/x.py"]


def test_a_clean_driver_names_stored_runs_trained_from_changes(tmp_path, monkeypatch, capsys):
    """The driver's note, from a clean tree, for runs whose provenance records changes to training code."""
    from kdlib import load_study
    from kdlib.driver import note_dirty_runs
    from kdlib.jobs import collect_jobs

    setup = load_study().setup("digits-mlp-self", "smoke")
    jobs = collect_jobs([("digits-mlp-self", setup)])

    class Store:  # only what the note reads
        def has(self, cfg):
            return True

        def provenance(self, cfg):
            if cfg.arm == "kd":
                return {"code_version": "abc-dirty", "tree_changes": {"changed_files": ["kdlib/arms.py"]}}
            if cfg.arm == "rcd":
                return {"code_version": "abc-dirty"}
            return {"code_version": "abc"}

    monkeypatch.setattr(prov, "code_version", lambda: "abc")
    note_dirty_runs(Store(), jobs)
    out = capsys.readouterr().out
    n_kd = sum(j.cfg.arm == "kd" for j in jobs)
    n_rcd = sum(j.cfg.arm == "rcd" for j in jobs)
    assert f"{n_kd} stored run(s) of this plan were trained from uncommitted changes to training code" in out
    assert "kdlib/arms.py" in out and f"{n_rcd} stored run(s)" in out and "does not record" in out


def test_a_cpu_run_names_the_cpu_model_and_the_kernels_its_rounding_depends_on(tmp_path, monkeypatch):
    """fp32 runs repeat bit for bit only on CPUs with the same kernels: the device says which they were,
    after the prefix earlier runs recorded ("cpu: <arch>, N cores")."""
    import os
    import platform

    import torch

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t:  Intel(R) Xeon(R)   Platinum 8480+\n"
                    "flags\t\t: fpu avx2\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n")
    assert prov.cpu_model(str(info)) == "Intel(R) Xeon(R) Platinum 8480+"  # whitespace collapsed, first CPU
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert prov.cpu_model(str(tmp_path / "absent")) == "unknown CPU"
    monkeypatch.setattr(prov, "cpu_model", lambda: "Some CPU")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr("kdlib.train.cpu_bf16_units", lambda: "AMX")
    assert prov.device_description("cpu") == f"cpu: {platform.machine()}, {os.cpu_count()} cores, Some CPU, AVX512 kernels, AMX"
    monkeypatch.setattr("kdlib.train.cpu_bf16_units", lambda: None)
    assert prov.device_description("cpu").endswith(", Some CPU, AVX512 kernels")
