"""scripts/summarise_ncf.py: picks each file's own factors, judges the gap."""

import json

from scripts import summarise_ncf as summarise


def _row(model, factors, hr, paper_hr=None, suffix=""):
  stat = lambda v: {"mean": v, "std": 0.0}
  return {"model": model, "variant": f"factors={factors}{suffix}",
          "protocol": "ncf-sampled-99",
          "metrics": {"MRR": stat(0.3), "HR@10": stat(hr)},
          "paper": {"HR@10": paper_hr} if paper_hr else {},
          "significance": {"HR@10": {"p": 0.5}}}


def test_collect_keeps_each_files_own_factors_in_order(tmp_path):
  files = {"ncf_ml1m": [_row("NeuMF", 16, 0.69), _row("GMF", 8, 0.63),
                        _row("GMF", 32, 0.1)],       # 32 is not this file's
           "ncf_ml1m_factors32": [_row("GMF", 32, 0.70)],
           "ncf_ml1m_factors64": [_row("GMF", 64, 0.69)],
           "ncf_ml1m_adam_finetune": [
               _row("NeuMF-pre", 64, 0.72, suffix=",adam-finetune"),
               _row("GMF", 64, 0.5),                 # not this file's
               _row("GMF", 16, 0.5),                 # nor this
               _row("NeuMF-pre", 16, 0.69, suffix=",adam-finetune"),
               _row("NeuMF-pre", 8, 0.67, suffix=",adam-finetune")],
           "ncf_ml1m_epochs60": [
               _row("MLP-3", 8, 0.67, suffix=",epochs=60"),
               _row("MLP-3", 32, 0.5, suffix=",epochs=60")],  # not this
           "ncf_ml1m_refit": [_row("NeuMF", 8, 0.68, suffix=",refit"),
                              _row("NeuMF", 8, 0.5)],  # not this file's
           "ncf_ml1m_code_embed": [
               _row("GMF", 16, 0.5),                 # not this file's
               _row("MLP-3", 16, 0.67, suffix=",code-embed")],
           "ncf_ml1m_tuned64": [
               _row("NeuMF-pre", 64, 0.71, suffix=",row-adam,tuned"),
               {**_row("NeuMF-pre", 64, 0.81, suffix=",row-adam,tuned"),
                "protocol": "ncf-sampled-99 (valid)",
                "role": "valid"}],                   # not a test row
           "ncf_ml1m_gmf_l2": [
               _row("NeuMF-pre", 64, 0.73,
                    suffix=",row-adam,tuned,gmf-l2=0.001"),
               _row("NeuMF-pre", 64, 0.5, suffix=",row-adam,tuned")],  # not this
           "ncf_ml1m_mlp_l2": [
               _row("NeuMF-pre", 64, 0.72,
                    suffix=",row-adam,tuned,mlp-l2=0.001"),
               _row("NeuMF-pre", 64, 0.5, suffix=",row-adam,tuned")],  # not this
           "ncf_ml1m_tuned8": [
               _row("NeuMF", 8, 0.67, suffix=",row-adam,batch=128,lr=0.001")],
           "ncf_ml1m_grid8_tuned": [
               _row("NeuMF-pre", 8, 0.66, suffix=",row-adam,grid8-tuned"),
               _row("NeuMF", 8, 0.5, suffix=",row-adam,tuned")],  # not this
           "ncf_ml1m_code_embed32": [
               _row("MLP-3", 32, 0.69, suffix=",row-adam,blas,code-embed"),
               _row("GMF", 32, 0.5, suffix=",row-adam")],  # not this file's
           "ncf_ml1m_code_embed64": [
               _row("MLP-3", 64, 0.69, suffix=",row-adam,blas,code-embed"),
               _row("GMF", 64, 0.5, suffix=",row-adam")],  # not this file's
           "ncf_ml1m_tuned16": [
               _row("NeuMF-pre", 16, 0.69, suffix=",row-adam,tuned"),
               _row("MLP-3", 16, 0.5, suffix=",row-adam,batch=256,lr=0.001")],
           "ncf_ml1m_tuned32": [
               _row("MLP-3", 32, 0.69, suffix=",row-adam,batch=128,lr=0.001"),
               _row("NeuMF-pre", 32, 0.71, suffix=",row-adam,tuned")],
           "ncf_ml1m_grid32_tuned": [
               _row("MLP-3", 32, 0.68, suffix=",row-adam,batch=256,lr=0.0005"),
               _row("MLP-3", 32, 0.5, suffix=",row-adam,batch=512,lr=0.001")],
           "ncf_ml1m_paper_init": [
               _row("NeuMF", 8, 0.678, suffix=",row-adam,paper-init"),
               _row("MLP-3", 64, 0.5, suffix=",row-adam,blas-fused")]}  # not this
  for name, rows in files.items():
    (tmp_path / f"{name}.json").write_text(json.dumps({"rows": rows}))
  rows = summarise.collect(tmp_path)
  assert [(r["model"], r["variant"]) for r in rows] == [
      ("GMF", "factors=8"), ("GMF", "factors=32"), ("GMF", "factors=64"),
      ("MLP-3", "factors=8,epochs=60"), ("MLP-3", "factors=16,code-embed"),
      ("MLP-3", "factors=32,row-adam,batch=128,lr=0.001"),
      ("MLP-3", "factors=32,row-adam,batch=256,lr=0.0005"),
      ("MLP-3", "factors=32,row-adam,blas,code-embed"),
      ("MLP-3", "factors=64,row-adam,blas,code-embed"),
      ("NeuMF", "factors=8,refit"),
      ("NeuMF", "factors=8,row-adam,batch=128,lr=0.001"),
      ("NeuMF", "factors=8,row-adam,paper-init"),
      ("NeuMF", "factors=16"),
      ("NeuMF-pre", "factors=8,adam-finetune"),
      ("NeuMF-pre", "factors=8,row-adam,grid8-tuned"),
      ("NeuMF-pre", "factors=16,adam-finetune"),
      ("NeuMF-pre", "factors=16,row-adam,tuned"),
      ("NeuMF-pre", "factors=32,row-adam,tuned"),
      ("NeuMF-pre", "factors=64,adam-finetune"),
      ("NeuMF-pre", "factors=64,row-adam,tuned"),
      ("NeuMF-pre", "factors=64,row-adam,tuned,gmf-l2=0.001"),
      ("NeuMF-pre", "factors=64,row-adam,tuned,mlp-l2=0.001")]
  assert rows[-3]["metrics"]["HR@10"]["mean"] == 0.71
  assert rows[-2]["metrics"]["HR@10"]["mean"] == 0.73
  assert rows[-1]["metrics"]["HR@10"]["mean"] == 0.72
  assert rows[1]["metrics"]["HR@10"]["mean"] == 0.70
  assert list(rows[0]["metrics"]) == ["HR@10", "MRR"]
  assert all("significance" not in r for r in rows)


def test_verdicts_use_the_tolerance_below_the_paper():
  lines = summarise.verdicts([_row("MLP-3", 8, 0.662, 0.671),
                              _row("MLP-3", 16, 0.660, 0.671),
                              _row("GMF", 8, 0.6)])
  assert len(lines) == 2
  assert lines[0].endswith("within 0.01 or above")
  assert lines[1].endswith("MISSED") and "(-0.0110)" in lines[1]
