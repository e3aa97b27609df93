rule base_model:
    output:
        directory("results/models/{model}/zero-shot"),
    input:
        package("model_sources"),
        corpus=base_model_corpus,
        local=local_model_dir,
    params:
        model=lambda w: as_json({**config["models"][w.model], "name": w.model}),
        corpus=lambda w, input: f"--corpus {parent_dir(input.corpus[0])}" if input.corpus else "",
    log:
        "results/logs/base_model/{model}.log",
    benchmark:
        "results/benchmarks/base_model/{model}.tsv"
    conda:
        ENV
    shell:
        "python -m hybridbatch base-model --params {params.model:q} {params.corpus} --out {output} > {log} 2>&1"


rule train:
    output:
        directory("results/models/{model}/{trainset}.{strategy}.s{seed}"),
    input:
        package("training"),
        base="results/models/{model}/zero-shot",
        batches="results/batches/{trainset}/{strategy}/s{seed}",
    params:
        training=lambda w: as_json(
            {"training": {**config["training"], "seed": int(w.seed)}, "model": config["models"][w.model]}
        ),
    threads: config["compute"]["threads"]
    resources:
        gpu=0,
    log:
        "results/logs/train/{model}/{trainset}.{strategy}.s{seed}.log",
    benchmark:
        "results/benchmarks/train/{model}/{trainset}.{strategy}.s{seed}.tsv"
    conda:
        ENV
    shell:
        "python -m hybridbatch train --params {params.training:q} --base {input.base}"
        " --batches {input.batches} --out {output} > {log} 2>&1"
