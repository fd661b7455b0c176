package builder

import (
	"reflect"
	"testing"

	"tpm/tarball"
)

func TestLinks(t *testing.T) {
	const bucket = "/p/opt/tpm/buckets/hello"
	files := []File{
		{Path: "bin", Type: tarball.TypeDir},
		{Path: "bin/hello", Type: tarball.TypeFile},
		{Path: "share", Type: tarball.TypeDir},
		{Path: "share/empty", Type: tarball.TypeDir},
		{Path: "share/man/man1/hello.1", Type: tarball.TypeFile}, // parents not listed
		{Path: "lib/libh.so", Type: tarball.TypeSymlink, Link: "libh.so.1"},
		{Path: "lib/libh.so.1", Type: tarball.TypeFile},
	}
	tests := []struct {
		name    string
		files   []File
		linkDir string
		want    []Link
	}{
		{"nothing", nil, "/p/usr/local", nil},
		{"default link dir", files[:2], "", []Link{
			{Path: "/p/usr/local/bin", Dir: true},
			{Path: "/p/usr/local/bin/hello", Target: bucket + "/bin/hello"},
		}},
		{"tree", files, "/p/farm", []Link{
			{Path: "/p/farm/bin", Dir: true},
			{Path: "/p/farm/bin/hello", Target: bucket + "/bin/hello"},
			{Path: "/p/farm/lib", Dir: true},
			{Path: "/p/farm/lib/libh.so", Target: bucket + "/lib/libh.so"},
			{Path: "/p/farm/lib/libh.so.1", Target: bucket + "/lib/libh.so.1"},
			{Path: "/p/farm/share", Dir: true},
			{Path: "/p/farm/share/empty", Dir: true},
			{Path: "/p/farm/share/man", Dir: true},
			{Path: "/p/farm/share/man/man1", Dir: true},
			{Path: "/p/farm/share/man/man1/hello.1", Target: bucket + "/share/man/man1/hello.1"},
		}},
		{"entries that are not the bucket's", []File{{Path: "."}, {Path: "../x", Type: tarball.TypeFile}, {Path: "/etc/x", Type: tarball.TypeFile}}, "/p/usr/local", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Links(bucket, tt.files, tt.linkDir); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Links =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}
