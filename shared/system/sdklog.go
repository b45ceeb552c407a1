package system

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/smithy-go/logging"
)

// SDKLogger routes the AWS SDK's own log lines (retry notices, checksum warnings, and
// request logs when a ClientLogMode asks for them) through the structured logger, as JSON
// lines with the rest, instead of the SDK's default plain writer to stderr.
func SDKLogger(log *slog.Logger) logging.Logger { return sdkLogger{log} }

type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	l.log.Log(context.Background(), sdkLevel(c), fmt.Sprintf(format, v...), "source", "aws-sdk")
}

// WithContext keeps the SDK's per-request logger on the same handler; the context carries
// nothing our handler reads.
func (l sdkLogger) WithContext(context.Context) logging.Logger { return l }

// The SDK writes Debug lines only when a ClientLogMode asks for them: whoever set one wants
// to see them, so they are Info.
func sdkLevel(c logging.Classification) slog.Level {
	if c == logging.Warn {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
