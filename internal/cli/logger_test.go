package cli

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestParseLogFormat(t *testing.T) {
	for in, want := range map[string]LogFormat{"": LogText, "text": LogText, "json": LogJSON} {
		if got, err := ParseLogFormat(in); err != nil || got != want {
			t.Errorf("ParseLogFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseLogFormat("yaml"); err == nil {
		t.Errorf("ParseLogFormat(\"yaml\") accepted it")
	}
	var buf strings.Builder
	LogJSON.NewLogger(&buf, slog.LevelInfo).Info("hello", "n", 1)
	var rec map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil || rec["msg"] != "hello" || rec["n"] != 1.0 {
		t.Errorf("a json logger wrote %q (%v)", buf.String(), err)
	}
}
