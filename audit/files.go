package audit

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

const (
	filePrefix = "audit-"
	fileSuffix = ".log"
)

// FileName is the name of log file number index.
func FileName(index uint64) string { return fmt.Sprintf("%s%08d%s", filePrefix, index, fileSuffix) }

type logFile struct {
	index uint64
	name  string
}

// parseFileName returns the index of a log file name.
func parseFileName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
		return 0, false
	}
	digits := strings.TrimSuffix(strings.TrimPrefix(name, filePrefix), fileSuffix)
	if len(digits) < 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || FileName(n) != name {
		return 0, false
	}
	return n, true
}

// listFiles returns the log files of dir in index order.
func listFiles(dir string) ([]logFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read audit log directory: %w", err)
	}
	var files []logFile
	for _, e := range ents {
		if idx, ok := parseFileName(e.Name()); ok && e.Type().IsRegular() {
			files = append(files, logFile{index: idx, name: e.Name()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].index < files[j].index })
	return files, nil
}
