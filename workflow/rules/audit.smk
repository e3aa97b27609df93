rule audit:
    output:
        report=artifact("audit", "audit.txt"),
        runs=artifact("audit", "runs.csv"),
    input:
        package("audit"),
        tables=rules.tables.output.summary,
    resources:
        **job_resources("audit"),
    log:
        log_file("audit", "audit"),
    benchmark:
        benchmark_file("audit", "audit")
    conda:
        ENV
    shell:
        f"python -m hybridbatch audit {RESULTS} > {{log}} 2>&1 && cp {{log}} {{output.report}}"
        f" && python -m hybridbatch runs {RESULTS} --csv {{output.runs}} > /dev/null"
