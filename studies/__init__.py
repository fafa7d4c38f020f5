"""2AFC human studies: study design, the SQLAlchemy store, the Streamlit rater app and fool-rate statistics.

Python API: `studies.design.StudyConfig`, `studies.store.Store`,
`studies.analysis.analyze(db) -> StudyAnalysis`.
"""
