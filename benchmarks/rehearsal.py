"""A rehearsal of the real image-text run at its real size, on this machine: generated
COCO-35L and XM3600 in their published formats at their true counts, a random SigLIP of
mSigLIP's text shape where it drives memory, and config/xm3600_hybrid.yaml itself run
through Snakemake, overriding only the model, the mirrors, the steps and the seeds.

    make rehearsal          # .venv/bin/python benchmarks/rehearsal.py --dir rehearsal

What is generated (under DIR/mirrors, once; a rerun reuses it):
- COCO-35L: Karpathy's `dataset_coco.json` (123,287 images: 82,783 train2014, 30,504
  restval, 5,000 val, 5,000 test; 616,767 captions) in `caption_datasets.zip`;
  `coco_mt_train.jsonl.bz2` with every train and restval caption in 34 target languages
  (about 19.3M lines, COCO-length captions in each language's script);
  `train2014.zip` / `val2014.zip` with a small JPEG per image (the counts are real, the
  pixels are not).
- XM3600: `captions.zip` (`captions.jsonl`: 3,600 images, 36 languages, 261,375 captions,
  1 to 3 per image and language) and `images.tgz` (3,600 JPEGs).
- The model (DIR/msiglip): a random SiglipModel whose text tower reads 64 positions,
  padded, no mask, through XLM-R's 250,002-token vocabulary (mSigLIP: 250,000), and whose
  embeddings are 768-d like mSigLIP's (text: 2 layers of width 64 projected to 768; vision:
  1 layer of width 768 over 32-px images), so features, caption embeddings, products and
  per-query tables have the real sizes while the towers' compute stays small.

Then `snakemake --cores N --configfile config/xm3600_hybrid.yaml DIR/overlay.yaml` in DIR
(config.yaml's offline text track runs beside it, as a user's run would): download,
prepare, image features, batches, every LiT run, the evaluations of every run and of the
untrained model, the tables and the audit; `--until RULE` stops earlier. It ends with a
table of each rule's jobs, wall time and peak RSS from Snakemake's benchmark files
(DIR/rehearsal.md). The generated photos are noise, so no model ranks a caption's image
first: the pooled i2t-multi ranking then counts about half of all 261k captions for every
image, the evaluation's worst case.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
KARPATHY_SPLITS = {"train": 82_783, "restval": 30_504, "val": 5_000, "test": 5_000}  # 123,287 images
COCO_CAPTIONS = 616_767
XM3600_CAPTIONS = 261_375
XM3600_IMAGES = 3_600
POOL = 20_000  # distinct captions per language to draw from
SCRIPTS = {  # a letter range per script, for captions of the right bytes per character
    "ar": (0x0621, 0x064A), "fa": (0x0621, 0x064A), "he": (0x05D0, 0x05EA), "el": (0x03B1, 0x03C9),
    "ru": (0x0430, 0x044F), "uk": (0x0430, 0x044F), "hi": (0x0905, 0x0939), "bn": (0x0985, 0x09B9),
    "te": (0x0C05, 0x0C39), "th": (0x0E01, 0x0E2E), "ko": (0xAC00, 0xD7A3), "ja": (0x3041, 0x3096),
    "zh": (0x4E00, 0x9FA5),
}  # fmt: skip
NO_SPACES = {"ja", "zh", "th"}


def config_languages() -> tuple[list[str], list[str]]:
    config = yaml.safe_load((REPO / "config/xm3600_hybrid.yaml").read_text())
    return config["corpora"]["coco35l"]["languages"], config["corpora"]["xm3600"]["languages"]


def caption_pool(lang: str, rng: np.random.Generator) -> list[str]:
    """POOL captions of COCO's length (about 10 words, 52 characters) in `lang`'s script,
    JSON-escaped."""
    low, high = SCRIPTS.get(lang, (0x61, 0x7A))
    letters = np.array([chr(c) for c in range(low, high + 1)])
    words = np.array(["".join(rng.choice(letters, rng.integers(2, 8))) for _ in range(3000)], dtype=object)
    joiner = "" if lang in NO_SPACES else " "
    captions = []
    for _ in range(POOL):
        chosen = rng.choice(words, rng.integers(8, 14))
        text = joiner.join(chosen)[: 26 if lang in NO_SPACES else 80]
        captions.append(json.dumps(text, ensure_ascii=False))
    return captions


def small_jpeg(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def write_coco35l(
    out: Path,
    languages: list[str],
    rng: np.random.Generator,
    splits: dict[str, int] = KARPATHY_SPLITS,
    captions: int = COCO_CAPTIONS,
) -> None:
    """COCO-35L's four files in `out`: `splits` images per Karpathy split, `captions` English
    captions (5 or 6 an image), each train and restval caption translated into `languages`."""
    out.mkdir(parents=True, exist_ok=True)
    total = sum(splits.values())
    cocoids = np.sort(rng.choice(600_000, total, replace=False)) + 1
    split_of = np.repeat(list(splits), list(splits.values()))
    captions_per_image = np.full(total, 5)
    captions_per_image[rng.choice(total, captions - 5 * total, replace=False)] = 6
    english = caption_pool("en", rng)
    images, sentence = [], 0
    for cocoid, split, count in zip(cocoids.tolist(), split_of, captions_per_image):
        folder = "train2014" if split == "train" else "val2014"
        sentences = []
        for _ in range(count):
            raw = json.loads(english[sentence % POOL])
            sentences.append({"tokens": raw.split(), "raw": raw, "imgid": len(images), "sentid": sentence})
            sentence += 1
        images.append({"filepath": folder, "filename": f"COCO_{folder}_{cocoid:012d}.jpg", "imgid": len(images),
                       "split": str(split), "sentences": sentences, "cocoid": cocoid})  # fmt: skip
    with zipfile.ZipFile(out / "caption_datasets.zip", "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("dataset_coco.json", json.dumps({"images": images, "dataset": "coco"}))
    print(f"coco35l: dataset_coco.json with {len(images):,} images, {sentence:,} captions", flush=True)
    for folder in ("train2014", "val2014"):
        with zipfile.ZipFile(out / f"{folder}.zip", "w", zipfile.ZIP_STORED) as handle:
            for image in images:
                if image["filepath"] == folder:
                    handle.writestr(f"{folder}/{image['filename']}", small_jpeg(rng))
    print("coco35l: train2014.zip, val2014.zip", flush=True)
    targets = [lang for lang in languages if lang != "en"]
    pools = {lang: caption_pool(lang, rng) for lang in targets}
    lines = 0
    halves = [subprocess.Popen(["bzip2", "-1"], stdin=subprocess.PIPE, stdout=open(out / f".part{i}", "wb"))
              for i in range(2)]  # fmt: skip
    train = [image for image in images if image["split"] in ("train", "restval")]
    for number, image in enumerate(train):
        chunk = []
        for n, caption in enumerate(image["sentences"]):
            source = json.dumps(caption["raw"])
            pick = caption["sentid"] * 7919
            for lang in targets:
                chunk.append(
                    f'{{"image_id": "{image["cocoid"]}_{n}", "src_lang": "en", "trg_lang": "{lang}", '
                    f'"caption_tokenized": {source}, "translation_tokenized": {pools[lang][pick % POOL]}}}\n'
                )
                pick += 1
        lines += len(chunk)
        halves[number % 2].stdin.write("".join(chunk).encode())  # both compress at once
    for process in halves:
        process.stdin.close()
        process.wait()
    with open(out / "coco_mt_train.jsonl.bz2", "wb") as joined:  # two bzip2 streams, one after the other
        for i in range(2):
            joined.write((out / f".part{i}").read_bytes())
            (out / f".part{i}").unlink()
    print(f"coco35l: coco_mt_train.jsonl.bz2 with {lines:,} lines", flush=True)


def write_xm3600(
    out: Path,
    languages: list[str],
    rng: np.random.Generator,
    images: int = XM3600_IMAGES,
    captions: int = XM3600_CAPTIONS,
) -> None:
    """XM3600's two files in `out`: `images` photos, `captions` captions in `languages` (2
    per image and language, one more or one fewer in as many cells as the count needs)."""
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({f"{value:016x}" for value in rng.integers(2**60, 2**62, images)})
    counts = np.full((len(keys), len(languages)), 2)
    extra = captions - counts.sum()
    cells = rng.choice(counts.size, abs(extra), replace=False)
    counts.flat[cells] += 1 if extra > 0 else -1
    pools = {lang: caption_pool(lang, rng) for lang in languages}
    lines = []
    for row, key in enumerate(keys):
        record = {"image/key": key, "image/locale": str(rng.choice(languages))}
        for column, lang in enumerate(languages):
            texts = [json.loads(pools[lang][(row * 11 + column * 3 + n) % POOL]) for n in range(counts[row, column])]
            record[lang] = {"caption": texts, "caption/tokenized": [text.lower() for text in texts]}
        lines.append(json.dumps(record, ensure_ascii=False))
    with zipfile.ZipFile(out / "captions.zip", "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("captions.jsonl", "\n".join(lines) + "\n")
    with tarfile.open(out / "images.tgz", "w:gz") as handle:
        for key in keys:
            data = small_jpeg(rng)
            info = tarfile.TarInfo(f"{key}.jpg")
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    print(f"xm3600: {len(keys):,} images, {int(counts.sum()):,} captions in {len(languages)} languages", flush=True)


def write_model(out: Path) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from dual_encoders import xlmr_tokenizer
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    tokenizer = xlmr_tokenizer(64)
    text = {"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 64, "projection_size": 768,
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}  # fmt: skip
    vision = {"hidden_size": 768, "intermediate_size": 1024, "num_hidden_layers": 1, "num_attention_heads": 12,
              "image_size": 32, "patch_size": 16}  # fmt: skip
    torch.manual_seed(0)
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)


def generate(root: Path) -> None:
    done = root / "mirrors" / ".complete"
    if done.exists():
        print(f"reusing the generated data in {root}", flush=True)
        return
    coco_languages, xm3600_languages = config_languages()
    started = time.perf_counter()
    write_model(root / "msiglip")
    write_xm3600(root / "mirrors" / "xm3600", xm3600_languages, np.random.default_rng(1))
    write_coco35l(root / "mirrors" / "coco35l", coco_languages, np.random.default_rng(0))
    done.write_text("")
    print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)


def overlay(root: Path, steps: int, seeds: list[int]) -> dict:
    """Only the model, the mirrors, the steps and the seeds differ from the shipped config."""
    return {
        "corpora": {name: {"mirror": str(root / "mirrors" / name)} for name in ("coco35l", "xm3600")},
        "models": {"msiglip": {"source": {"path": str(root / "msiglip")}}},
        "image_text": {"seeds": seeds, "batching": {"steps": steps}},
    }


def stage_table(root: Path) -> str:
    """Jobs, wall seconds (sum and largest) and peak RSS per rule, from the benchmark files."""
    import pandas as pd

    rows = []
    for rule_dir in sorted((root / "results" / "benchmarks").iterdir()):
        frames = [pd.read_csv(path, sep="\t") for path in rule_dir.rglob("*.tsv")]
        if not frames:
            continue
        frame = pd.concat(frames)
        rows.append((rule_dir.name, len(frame), frame.s.sum(), frame.s.max(), frame.max_rss.max() / 1024))
    lines = ["| rule | jobs | seconds (sum) | seconds (largest job) | peak RSS (GB) |", "|---|---|---|---|---|"]
    lines += [
        f"| {rule} | {jobs} | {total:.0f} | {largest:.0f} | {rss:.2f} |" for rule, jobs, total, largest, rss in rows
    ]
    return "\n".join(lines)


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=REPO / "rehearsal")
    parser.add_argument("--steps", type=int, default=10, help="LiT steps per run (the shipped config: 2,000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--generate-only", action="store_true", help="write the data and the model, run nothing")
    parser.add_argument("--until", help="stop after this rule (e.g. train_lit); default: the whole workflow")
    args = parser.parse_args()
    root = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    generate(root)
    if args.generate_only:
        return
    (root / "config.yaml").write_text((REPO / "config.yaml").read_text())
    (root / "overlay.yaml").write_text(yaml.safe_dump(overlay(root, args.steps, args.seeds)))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(root),
               "--cores", str(args.cores), "--configfile", str(REPO / "config/xm3600_hybrid.yaml"),
               str(root / "overlay.yaml")] + (["--until", args.until] if args.until else [])  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True)
    table = stage_table(root)
    report = (
        f"Rehearsal of config/xm3600_hybrid.yaml at full size ({args.steps} LiT steps, seeds {args.seeds}), "
        f"{time.perf_counter() - started:.0f} s of Snakemake\n\n{table}\n"
    )
    (root / "rehearsal.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
