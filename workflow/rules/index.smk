rule embed_shard:
    output:
        directory(artifact("embedding_shard")),
    input:
        package("embed-shard"),
        model=artifact("model"),
        base=base_of_trained,
        corpus=corpus_split("test"),
    wildcard_constraints:
        shard="[0-9]+",
        shards="[0-9]+",
    params:
        embedding=stage_params("embed-shard"),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
    threads: job_threads("embed_shard")
    resources:
        **job_resources("embed_shard"),
    log:
        log_file("embed_shard", "{model}/{variant}/{corpus}/{shard}-of-{shards}"),
    benchmark:
        benchmark_file("embed_shard", "{model}/{variant}/{corpus}/{shard}-of-{shards}")
    conda:
        ENV
    shell:
        stage_command("embed_shard", "embedding", corpus="{params.corpus}")


rule embed:
    output:
        directory(artifact("embeddings")),
    input:
        package("embed"),
        model=artifact("model"),
        base=base_of_trained,
        corpus=corpus_split("test"),
        shards=passage_shards,
    params:
        embedding=stage_params("embed"),
        corpus=lambda w, input: parent_dir(input.corpus[0]),
    threads: job_threads("embed")
    resources:
        **job_resources("embed"),
    log:
        log_file("embed", "{model}/{variant}/{corpus}"),
    benchmark:
        benchmark_file("embed", "{model}/{variant}/{corpus}")
    conda:
        ENV
    shell:
        stage_command("embed", "embedding", corpus="{params.corpus}", shards="{input.shards}")
