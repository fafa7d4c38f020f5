"""HTML reports of benchmark runs and human studies: `reports.html.write_report(run_dir, study, out)`."""
