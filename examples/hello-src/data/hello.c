#include <stdio.h>

int main(int argc, char **argv)
{
	printf("Hello, %s! (built from source by tpm)\n", argc > 1 ? argv[1] : "world");
	return 0;
}
