# A file or directory of your own (config `imports.<name>`) made an artifact with a manifest,
# so that any stage can be given it: snakemake results/imports/<name>
rule import_files:
    output:
        directory(artifact("import")),
    input:
        package("import-files"),
    params:
        source=stage_params("import-files"),
    threads: job_threads("import_files")
    resources:
        **job_resources("import_files"),
    log:
        log_file("import_files", "{name}"),
    benchmark:
        benchmark_file("import_files", "{name}")
    conda:
        ENV
    shell:
        stage_command("import_files", "source")
