package infra

// Queue attributes of the dead-letter queue and its archive (the DLQ's own redrive
// target after MaxReceiveCount failed redrives). template.yaml declares the same.
const (
	DLQRetentionSeconds = 1209600 // 14 days, the SQS maximum
	DLQMaxReceiveCount  = 5
)

// DLQAttributes are the dead-letter queue's attributes; the redrive policy is added once
// the archive queue's ARN is known.
func DLQAttributes() map[string]string {
	return map[string]string{
		"MessageRetentionPeriod": "1209600",
		"SqsManagedSseEnabled":   "true",
		"VisibilityTimeout":      "60",
	}
}
