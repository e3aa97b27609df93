def trainset_corpus(wildcards):
    corpus = config["trainsets"][wildcards.trainset]["corpus"]
    return expand("results/corpora/{corpus}/train/{name}.parquet", corpus=corpus, name=["queries", "passages"])


rule pairs:
    output:
        "results/train/{trainset}/pairs.parquet",
    input:
        package("pairs"),
        corpus=trainset_corpus,
    params:
        trainset=lambda w: as_json(config["trainsets"][w.trainset]),
        corpus=lambda w: corpus_split(config["trainsets"][w.trainset]["corpus"], "train"),
    log:
        "results/logs/pairs/{trainset}.log",
    benchmark:
        "results/benchmarks/pairs/{trainset}.tsv"
    conda:
        ENV
    shell:
        "{HYBRIDBATCH} pairs --params {params.trainset:q} --corpus {params.corpus} --out {output} > {log} 2>&1"
