import sys
from pathlib import Path

# recording.py is shared with worker.py, which runs as a plain script in a subprocess.
sys.path.insert(0, str(Path(__file__).parent))
