package engine

import (
	"os"
	"strconv"
)

var stageWorkers = func() int {
	if n, err := strconv.Atoi(os.Getenv("ZZ_WORKERS")); err == nil {
		return n
	}
	return stageWorkersConst
}()
