rule batches:
    output:
        report(
            directory("results/batches/{trainset}/{strategy}/s{seed}"),
            patterns=["language_pairs.{ext}"],
            caption="../report/batches.rst",
            category="Batch statistics",
            subcategory="{trainset}",
            labels={"strategy": "{strategy}", "seed": "{seed}"},
        ),
    input:
        package("batching"),
        pairs="results/train/{trainset}/pairs.parquet",
        qrels="results/train/{trainset}/qrels.parquet",
    params:
        plan=lambda w: as_json(
            {**config["batching"], "alpha": config["strategies"][w.strategy]["alpha"], "seed": int(w.seed)}
        ),
        pairs_dir=lambda w, input: parent_dir(input.pairs),
    log:
        "results/logs/batches/{trainset}/{strategy}/s{seed}.log",
    benchmark:
        "results/benchmarks/batches/{trainset}/{strategy}/s{seed}.tsv"
    conda:
        ENV
    shell:
        "python -m hybridbatch batches --params {params.plan:q} --pairs {params.pairs_dir} --out {output} > {log} 2>&1"
