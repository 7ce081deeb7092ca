from mlops.cli import main

if __name__ == "__main__":  # worker processes re-import the main module under another name
    raise SystemExit(main())
